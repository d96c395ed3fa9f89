//! What `/readyz`, `/status` (and the status page) and `/metrics` say.
//!
//! `/readyz` is about the gateway itself: 503 until the catalog has been read
//! once, while the container engine does not answer, and for good when a
//! background task died (the body names each reason).
//! One upstream server that is not ready does not take the gateway out of
//! service (the others keep serving, and a load balancer could do nothing
//! about it); the 200 body lists such servers under `notReady` with the
//! reason each one gives.
use std::sync::Arc;

use serde_json::{Map, Value};

use super::http::{GatewayState, Readiness, StatusSource};
use super::logs::NoLog;
use crate::controller::Context;
use crate::controller::logbuf::LogBuffer;
use crate::status::{FleetStatus, Phase};

/// The gateway's readiness and status, from the controller's context.
pub struct Health(pub Arc<Context>);

impl StatusSource for Health {
    fn status_json(&self) -> Value {
        serde_json::to_value(self.0.status.snapshot()).expect("status serialises")
    }

    fn status_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.status.subscribe()
    }
}

impl GatewayState for Health {
    fn metrics_text(&self) -> String {
        super::observe::metrics_text(&self.0.status.snapshot())
    }

    fn server_log(&self, server: &str, follow: bool) -> Result<Arc<LogBuffer>, NoLog> {
        if let Some(b) = self.0.logs.buffer(server) {
            return Ok(b);
        }
        match self.0.status.server(server).map(|s| s.phase) {
            None => Err(NoLog::Unknown),
            Some(Phase::Remote) => Err(NoLog::Remote),
            // Known, no line yet: a follower waits for the first ones.
            Some(_) if follow => Ok(self.0.logs.buffer_or_new(server)),
            Some(_) => Ok(Arc::default()),
        }
    }

    fn readiness(&self) -> Readiness {
        readiness(
            self.0.tasks.failures(),
            self.0.desired().is_some(),
            &self.0.status.snapshot(),
        )
    }
}

fn readiness(failures: Vec<String>, catalog_read: bool, status: &FleetStatus) -> Readiness {
    let mut reasons = failures;
    if !catalog_read {
        reasons.push("the catalog has not been read yet".into());
    }
    if !status.engine.reachable {
        let why = status.engine.error.as_deref().unwrap_or("not reached yet");
        reasons.push(format!("the container engine does not answer: {why}"));
    }
    let not_ready: Map<String, Value> = status
        .servers
        .iter()
        .filter_map(|(name, s)| {
            let r = s.ready.as_ref().filter(|r| !r.status)?;
            Some((name.clone(), r.message.clone().into()))
        })
        .collect();
    let mut detail = Map::new();
    if !reasons.is_empty() {
        detail.insert("reasons".into(), reasons.clone().into());
    }
    detail.insert("notReady".into(), not_ready.into());
    Readiness {
        ready: reasons.is_empty(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Condition, ServerStatus};
    use serde_json::json;

    fn server(ready: Option<bool>) -> ServerStatus {
        ServerStatus {
            phase: Phase::Remote,
            message: String::new(),
            restart_count: 0,
            container_id: None,
            spec_hash: None,
            last_transition_time: String::new(),
            backoff_ms: None,
            tools: None,
            ready: ready.map(|status| Condition {
                status,
                message: if status { "ok" } else { "no answer" }.into(),
                last_transition_time: String::new(),
            }),
        }
    }

    #[test]
    fn a_failing_server_is_listed_but_the_gateway_stays_ready() {
        let mut st = FleetStatus::default();
        st.engine.reachable = true;
        st.servers.insert("bad".into(), server(Some(false)));
        st.servers.insert("good".into(), server(Some(true)));
        st.servers.insert("new".into(), server(None));
        let r = readiness(vec![], true, &st);
        assert!(r.ready);
        assert_eq!(
            Value::Object(r.detail),
            json!({"notReady": {"bad": "no answer"}})
        );
    }

    #[test]
    fn a_dead_task_no_catalog_or_no_engine_is_not_ready() {
        let st = FleetStatus::default();
        let r = readiness(
            vec!["background task `pool` panicked: x".into()],
            false,
            &st,
        );
        assert!(!r.ready);
        assert_eq!(
            r.detail["reasons"],
            json!([
                "background task `pool` panicked: x",
                "the catalog has not been read yet",
                "the container engine does not answer: not reached yet"
            ])
        );
    }
}
