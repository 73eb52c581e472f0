//! The ledger's Lua scripts. Each check-and-set is one script, so concurrent workers
//! cannot interleave; each touches the keys of one message only (one hash slot, see
//! [`super::keys`]) or one key.

use redis::{Cmd, Script};

/// KEYS: done:event, done:msg, claim:event, claim:msg, wake (all of one message);
/// ARGV: owner, lease ms, attempt.
const CLAIM: &str = r"
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 'duplicate' end
end
local gen = tonumber(redis.call('GET', KEYS[5]) or '0')
if tonumber(ARGV[3]) < gen then return 'superseded' end
for i = 3, 4 do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then return 'busy' end
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
return 'claimed'
";

/// KEYS: the keys to delete when held by ARGV[1].
const RELEASE: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
";

/// KEYS: keys to extend to ARGV[2] ms when held by ARGV[1]. Returns how many were.
const RENEW: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return n
";

/// KEYS[1..n] done marks, then claim keys; ARGV: owner, ttl ms, number of done marks.
const FINISH: &str = r"
local marks = tonumber(ARGV[3])
for i = 1, marks do redis.call('SET', KEYS[i], '1', 'PX', ARGV[2]) end
for i = marks + 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
";

/// Raise the wake generation to ARGV[1] unless it is already there.
const WAKE: &str = r"
local gen = tonumber(redis.call('GET', KEYS[1]) or '0')
if gen >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Confirm a status record we reserved: ARGV owner-pending value, ts, ttl.
const CONFIRM_STATUS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Every script, hashed once.
pub(super) struct Scripts {
    pub claim: Script,
    pub release: Script,
    pub renew: Script,
    pub finish: Script,
    pub wake: Script,
    pub confirm_status: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
            finish: Script::new(FINISH),
            wake: Script::new(WAKE),
            confirm_status: Script::new(CONFIRM_STATUS),
        }
    }
}

/// `EVALSHA` of `script` with `keys` and `args`, for a pipeline (the redis crate's
/// [`redis::ScriptInvocation`] only runs alone). A `NOSCRIPT` answer means the script must
/// be loaded first (`SCRIPT LOAD`, see [`Script::load_async`]).
pub(super) fn evalsha(script: &Script, keys: &[&str], args: &[&[u8]]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}
