//! `--runtime docker|kubernetes` and the Kubernetes backend's own flags.
use std::sync::Arc;
use std::time::Duration;

use super::kubernetes::{KubeSettings, KubernetesRuntime};
use super::metered::Metered;
use super::{DockerRuntime, PullPolicy, Runtime};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    Docker,
    Kubernetes,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Where servers run [default: kubernetes inside a cluster (KUBERNETES_SERVICE_HOST set), else docker].
    #[arg(long, value_enum, env = "MCP_FLEET_RUNTIME")]
    pub runtime: Option<RuntimeKind>,
    /// Kubernetes: the namespace of the server Pods [default: the service account's own].
    #[arg(long, env = "MCP_FLEET_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubernetes: mcp-fleet's own Deployment, made the owner of every server
    /// Pod, so that deleting it removes the fleet.
    #[arg(long, env = "MCP_FLEET_OWNER_DEPLOYMENT")]
    pub owner_deployment: Option<String>,
}

impl RuntimeArgs {
    pub fn kind(&self) -> RuntimeKind {
        self.kind_with(std::env::var_os("KUBERNETES_SERVICE_HOST"))
    }

    /// Kubelet sets `KUBERNETES_SERVICE_HOST` in every container it runs.
    fn kind_with(&self, service_host: Option<std::ffi::OsString>) -> RuntimeKind {
        self.runtime
            .unwrap_or(match service_host.is_some_and(|h| !h.is_empty()) {
                true => RuntimeKind::Kubernetes,
                false => RuntimeKind::Docker,
            })
    }

    /// The backend, counted by `mcp_fleet_engine_calls`. Docker's engine may
    /// not be up yet (the controller waits for it); Kubernetes needs its
    /// configuration now, though not a reachable API server.
    pub async fn build(
        &self,
        pull: PullPolicy,
        stop_timeout: Duration,
    ) -> Result<Arc<dyn Runtime>> {
        Ok(match self.kind() {
            RuntimeKind::Docker => Arc::new(Metered(Arc::new(DockerRuntime::new()))),
            RuntimeKind::Kubernetes => Arc::new(Metered(Arc::new(
                KubernetesRuntime::connect(KubeSettings {
                    namespace: self.namespace.clone().unwrap_or_default(),
                    pull,
                    stop_timeout,
                    owner_deployment: self.owner_deployment.clone(),
                })
                .await?,
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_is_the_default_inside_a_cluster_and_a_flag_wins() {
        let args = |runtime| RuntimeArgs {
            runtime,
            namespace: None,
            owner_deployment: None,
        };
        let in_cluster = Some("10.96.0.1".into());
        assert_eq!(
            args(None).kind_with(in_cluster.clone()),
            RuntimeKind::Kubernetes
        );
        assert_eq!(args(None).kind_with(None), RuntimeKind::Docker);
        assert_eq!(args(None).kind_with(Some("".into())), RuntimeKind::Docker);
        let docker = args(Some(RuntimeKind::Docker));
        assert_eq!(docker.kind_with(in_cluster), RuntimeKind::Docker);
    }
}
