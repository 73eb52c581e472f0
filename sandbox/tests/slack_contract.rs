//! The fake Slack Web API answers as strictly as Slack documents it: errors are HTTP 200
//! with `ok:false` and Slack's error code, tokens and conversations must exist, and the
//! OAuth exchange checks the app, the code and its redirect URI.

use std::time::Duration;

use serde_json::{Value, json};
use spritz_sandbox::slack::{FakeSlack, OAuthGrant};

const WAIT: Duration = Duration::from_secs(5);
const TEAM: &str = "T1";
const BOT_TOKEN: &str = "xoxb-1";

fn http() -> reqwest::Client {
    spritz_sandbox::tls::http_client_builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

/// A fake Slack with workspace T1: bot token `xoxb-1`, channel `C1` and DM `D1`.
async fn slack() -> FakeSlack {
    let slack = FakeSlack::start().await.expect("slack");
    slack.add_workspace(TEAM, BOT_TOKEN, &["C1", "D1"]);
    slack
}

/// `POST /api/chat.postMessage` with a JSON body and no bearer (add one).
fn post_message(slack: &FakeSlack, body: &Value) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}/chat.postMessage", slack.base_url()))
        .json(body)
}

/// Posts `body` as the bot of T1 and returns Slack's status and JSON answer.
async fn post_as_bot(slack: &FakeSlack, body: &Value) -> (u16, Value) {
    let response = post_message(slack, body)
        .bearer_auth(BOT_TOKEN)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What `oauth.v2.access` grants in these tests: team T1 installing app A1.
fn grant(enterprise_id: Option<&str>, scope: &str) -> OAuthGrant {
    OAuthGrant {
        team_id: TEAM.into(),
        team_name: "Team One".into(),
        enterprise_id: enterprise_id.map(str::to_owned),
        app_id: "A1".into(),
        bot_user_id: "U1BOT".into(),
        bot_access_token: "xoxb-new".into(),
        installing_user_id: "U1".into(),
        scope: scope.into(),
    }
}

/// `POST /api/oauth.v2.access` as a form.
fn oauth_access(slack: &FakeSlack, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}/oauth.v2.access", slack.base_url()))
        .form(form)
}

#[tokio::test]
async fn a_post_without_a_token_is_not_authed_and_an_unknown_token_is_invalid_auth() {
    let slack = slack().await;
    let hi = json!({"channel": "C1", "text": "hi"});

    let unauthenticated: Value = post_message(&slack, &hi)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let forged = post_message(&slack, &hi)
        .bearer_auth("xoxb-never-issued")
        .send()
        .await
        .expect("post");

    assert_eq!(unauthenticated, json!({"ok": false, "error": "not_authed"}));
    assert_eq!(forged.status(), 200, "Slack answers errors with HTTP 200");
    assert_eq!(
        forged.json::<Value>().await.expect("json"),
        json!({"ok": false, "error": "invalid_auth"})
    );
    assert!(slack.posts().is_empty());
    assert_eq!(slack.post_attempts(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_token_revoked_and_accepted_posts_get_unique_increasing_ts() {
    let slack = slack().await;
    let hi = json!({"channel": "C1", "text": "hi"});
    for _ in 0..3 {
        assert_eq!(post_as_bot(&slack, &hi).await.1["ok"], true);
    }
    let posts = slack.wait_for_posts(3, WAIT).await.expect("posts");
    assert!(posts[0].ts < posts[1].ts && posts[1].ts < posts[2].ts);

    slack.revoke_token(BOT_TOKEN);

    let (status, revoked) = post_as_bot(&slack, &hi).await;
    assert_eq!(status, 200);
    assert_eq!(revoked, json!({"ok": false, "error": "token_revoked"}));
    assert_eq!(slack.posts().len(), 3);
}

#[tokio::test]
async fn an_unknown_or_missing_channel_is_channel_not_found() {
    let slack = slack().await;
    slack.add_workspace("T2", "xoxb-2", &["C2"]);

    for body in [
        json!({"channel": "C404", "text": "hi"}),
        json!({"channel": "C2", "text": "another workspace's channel"}),
        json!({"text": "no channel"}),
    ] {
        let (status, answer) = post_as_bot(&slack, &body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            answer,
            json!({"ok": false, "error": "channel_not_found"}),
            "{body}"
        );
    }

    slack.add_channels(TEAM, &["C9"]);
    assert_eq!(
        post_as_bot(&slack, &json!({"channel": "C9", "text": "hi"}))
            .await
            .1["ok"],
        true
    );
}

#[tokio::test]
async fn a_post_without_text_is_no_text_and_a_body_that_is_no_json_is_invalid_json() {
    let slack = slack().await;
    for body in [
        json!({"channel": "C1"}),
        json!({"channel": "C1", "text": "  "}),
    ] {
        let (_, answer) = post_as_bot(&slack, &body).await;
        assert_eq!(answer, json!({"ok": false, "error": "no_text"}), "{body}");
    }
    let garbled: Value = http()
        .post(format!("{}/chat.postMessage", slack.base_url()))
        .bearer_auth(BOT_TOKEN)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(garbled, json!({"ok": false, "error": "invalid_json"}));
    assert!(slack.posts().is_empty());
}

#[tokio::test]
async fn an_accepted_post_answers_channel_ts_and_the_message_in_its_thread() {
    let slack = slack().await;
    let (status, answer) = post_as_bot(
        &slack,
        &json!({"channel": "C1", "text": "hi", "thread_ts": "1.1"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["channel"], "C1");
    let posts = slack.wait_for_posts(1, WAIT).await.expect("post");
    assert_eq!(answer["ts"], json!(posts[0].ts));
    assert_eq!(answer["message"]["thread_ts"], "1.1");
    assert_eq!(answer["message"]["text"], "hi");
    assert_eq!(posts[0].token, BOT_TOKEN);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_then_the_post_is_accepted() {
    let slack = slack().await;
    slack.rate_limit_next_posts(1, 7);
    slack.fail_next_posts(1, "channel_not_found");
    slack.fail_next_posts_with_status(1, 500);
    let post = || {
        post_message(
            &slack,
            &json!({"channel": "C1", "text": "hi", "thread_ts": "1.1"}),
        )
        .bearer_auth(BOT_TOKEN)
        .send()
    };

    let limited = post().await.expect("post");
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let refused: Value = post().await.expect("post").json().await.expect("json");
    assert_eq!(refused, json!({"ok": false, "error": "channel_not_found"}));
    assert_eq!(post().await.expect("post").status(), 500);
    let accepted: Value = post().await.expect("post").json().await.expect("json");

    assert_eq!(accepted["ok"], true);
    let posts = slack.wait_for_posts(1, WAIT).await.expect("post recorded");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].thread_ts.as_deref(), Some("1.1"));
    assert_eq!(slack.post_attempts(), 4);
}

#[tokio::test]
async fn injected_faults_come_after_the_token_check() {
    let slack = slack().await;
    slack.fail_next_posts_with_status(1, 500);
    let hi = json!({"channel": "C1", "text": "hi"});

    let forged: Value = post_message(&slack, &hi)
        .bearer_auth("xoxb-forged")
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let (status, _) = post_as_bot(&slack, &hi).await;

    assert_eq!(forged["error"], "invalid_auth", "refused before any fault");
    assert_eq!(
        status, 500,
        "the fault was still pending for the valid token"
    );
}

#[tokio::test]
async fn an_oauth_code_exchanges_once_for_slacks_shape_and_its_bot_token_then_posts() {
    let slack = FakeSlack::start().await.expect("slack");
    slack.expect_oauth_client("cid", "secret");
    slack.register_oauth_code("code-1", grant(None, "chat:write,app_mentions:read"));
    let exchange = || {
        oauth_access(
            &slack,
            &[
                ("code", "code-1"),
                ("client_id", "cid"),
                ("client_secret", "secret"),
                ("redirect_uri", "https://gw/slack/oauth/callback"),
            ],
        )
        .send()
    };

    let granted: Value = exchange()
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(granted["ok"], true);
    assert_eq!(granted["access_token"], "xoxb-new");
    assert_eq!(granted["token_type"], "bot");
    assert_eq!(granted["team"]["id"], TEAM);
    assert_eq!(granted["enterprise"], Value::Null);
    assert_eq!(granted["authed_user"]["id"], "U1");
    let replayed: Value = exchange()
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(replayed, json!({"ok": false, "error": "invalid_code"}));
    let exchanges = slack.oauth_exchanges();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].client_id, "cid");
    assert_eq!(exchanges[0].redirect_uri, "https://gw/slack/oauth/callback");

    slack.add_channels(TEAM, &["C1"]);
    let posted: Value = post_message(&slack, &json!({"channel": "C1", "text": "hi"}))
        .bearer_auth("xoxb-new")
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(posted["ok"], true, "the granted bot token is valid");
}

#[tokio::test]
async fn the_oauth_exchange_checks_the_app_credentials_before_the_code() {
    let slack = FakeSlack::start().await.expect("slack");
    slack.register_oauth_code("code-1", grant(None, "chat:write"));
    let exchange = |client_id: &'static str, secret: &'static str| {
        oauth_access(
            &slack,
            &[
                ("code", "code-1"),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
        .send()
    };
    let error = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")["error"].clone()
    };

    assert_eq!(
        error(exchange("cid", "secret").await.expect("exchange")).await,
        "invalid_client_id",
        "no app registered"
    );
    slack.expect_oauth_client("cid", "secret");
    assert_eq!(
        error(exchange("other", "secret").await.expect("exchange")).await,
        "invalid_client_id"
    );
    assert_eq!(
        error(exchange("cid", "wrong").await.expect("exchange")).await,
        "bad_client_secret"
    );
    let granted: Value = exchange("cid", "secret")
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(
        granted["ok"], true,
        "the code survived the refused attempts"
    );
}

#[tokio::test]
async fn the_install_page_redirects_with_a_code_bound_to_its_redirect_uri_or_access_denied() {
    let slack = FakeSlack::start().await.expect("slack");
    slack.expect_oauth_client("cid", "s");
    let no_redirects = spritz_sandbox::tls::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authorize = || {
        no_redirects
            .get(format!("{}/oauth/v2/authorize", slack.origin()))
            .query(&[
                ("client_id", "cid"),
                ("scope", "chat:write"),
                ("redirect_uri", "https://gw/slack/oauth/callback"),
                ("state", "s1"),
            ])
            .send()
    };
    let denied = authorize().await.expect("authorize");
    assert_eq!(denied.status(), 302);
    assert!(
        denied.headers()["location"]
            .to_str()
            .expect("location")
            .contains("error=access_denied")
    );

    slack.approve_installs(Some(grant(Some("E1"), "chat:write")));
    let code = |response: reqwest::Response| {
        let location = url::Url::parse(response.headers()["location"].to_str().expect("location"))
            .expect("url");
        let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "s1");
        query["code"].clone()
    };
    let first = code(authorize().await.expect("authorize"));
    let elsewhere: Value = oauth_access(
        &slack,
        &[
            ("code", first.as_str()),
            ("client_id", "cid"),
            ("client_secret", "s"),
            ("redirect_uri", "https://attacker/callback"),
        ],
    )
    .send()
    .await
    .expect("exchange")
    .json()
    .await
    .expect("json");
    assert_eq!(elsewhere, json!({"ok": false, "error": "bad_redirect_uri"}));

    let second = code(authorize().await.expect("authorize"));
    let granted: Value = oauth_access(
        &slack,
        &[
            ("code", second.as_str()),
            ("client_id", "cid"),
            ("client_secret", "s"),
            ("redirect_uri", "https://gw/slack/oauth/callback"),
        ],
    )
    .send()
    .await
    .expect("exchange")
    .json()
    .await
    .expect("json");
    assert_eq!(granted["enterprise"]["id"], "E1");
}

#[tokio::test]
async fn the_control_api_adds_workspaces_and_channels_reads_posts_and_sets_faults() {
    let slack = FakeSlack::start().await.expect("slack");
    let control = spritz_sandbox::slack::ControlClient::new(&slack.base_url());
    let waiter = tokio::spawn({
        let control = control.clone();
        async move { control.wait_for_posts(1, WAIT).await }
    });
    let sandbox = |path: &str| format!("{}/_sandbox/{path}", slack.origin());
    http()
        .put(sandbox("workspaces"))
        .json(&json!({"team_id": TEAM, "bot_token": BOT_TOKEN, "channels": ["C1"]}))
        .send()
        .await
        .expect("workspace")
        .error_for_status()
        .expect("accepted");
    control.add_channel(TEAM, "C2").await.expect("channel");
    http()
        .post(sandbox("faults"))
        .json(&json!({"kind": "status", "count": 1, "status": 503}))
        .send()
        .await
        .expect("faults")
        .error_for_status()
        .expect("accepted");
    let post = |channel: &'static str| {
        post_message(&slack, &json!({"channel": channel, "text": "hi"}))
            .bearer_auth(BOT_TOKEN)
            .send()
    };
    assert_eq!(post("C1").await.expect("post").status(), 503);
    assert!(post("C2").await.expect("post").status().is_success());
    let posts = waiter.await.expect("task").expect("posts");
    assert_eq!(posts[0].channel, "C2");

    http()
        .put(sandbox("oauth/client"))
        .json(&json!({"client_id": "cid", "client_secret": "s"}))
        .send()
        .await
        .expect("client")
        .error_for_status()
        .expect("accepted");
    slack.register_oauth_code("code-1", grant(None, "chat:write"));
    let granted: Value = oauth_access(
        &slack,
        &[
            ("code", "code-1"),
            ("client_id", "cid"),
            ("client_secret", "s"),
        ],
    )
    .send()
    .await
    .expect("exchange")
    .json()
    .await
    .expect("json");
    assert_eq!(granted["ok"], true);
}
