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
        self.runtime.unwrap_or_else(|| {
            match std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
                true => RuntimeKind::Kubernetes,
                false => RuntimeKind::Docker,
            }
        })
    }

    /// The backend, counted by `mcp_fleet_engine_calls`. Docker's engine may
    /// not be up yet (the controller waits for it); Kubernetes needs its
    /// configuration now, though not a reachable API server.
    pub async fn build(
        &self,
        fleet: &str,
        pull: PullPolicy,
        stop_timeout: Duration,
    ) -> Result<Arc<dyn Runtime>> {
        let inner: Arc<dyn Runtime> = match self.kind() {
            RuntimeKind::Docker => Arc::new(DockerRuntime::new()),
            RuntimeKind::Kubernetes => Arc::new(
                KubernetesRuntime::connect(KubeSettings {
                    namespace: self.namespace.clone().unwrap_or_default(),
                    fleet: fleet.to_string(),
                    pull,
                    stop_timeout,
                    owner_deployment: self.owner_deployment.clone(),
                })
                .await?,
            ),
        };
        Ok(Arc::new(Metered(inner)))
    }
}
