//! A kubeconfig file that points a `spritz-notifier` process at the fake API server
//! (plain HTTP, the fake's default bearer token). Shared by the tests and the benchmark.

use std::path::{Path, PathBuf};

/// A kubeconfig written to a temporary file, removed on drop.
pub struct KubeconfigFile {
    path: PathBuf,
}

impl KubeconfigFile {
    /// Writes a kubeconfig whose only cluster is `server` (`http://127.0.0.1:<port>`).
    pub fn write(server: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "spritz-notifier-{}.kubeconfig",
            uuid::Uuid::new_v4().simple()
        ));
        let contents = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            token = spritz_sandbox::kubernetes::DEFAULT_TOKEN,
        );
        std::fs::write(&path, contents)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
