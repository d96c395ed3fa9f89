use super::*;
use rmcp::model::{
    CallToolResult, LoggingLevel, LoggingMessageNotificationParam, Notification, RequestId,
    ServerNotification, ServerResult,
};
use tokio::sync::oneshot;

fn log(text: &str) -> ServerJsonRpcMessage {
    let params = LoggingMessageNotificationParam::new(LoggingLevel::Info, text.into());
    ServerJsonRpcMessage::notification(ServerNotification::LoggingMessageNotification(
        Notification::new(params),
    ))
}

fn response(id: i64) -> ServerJsonRpcMessage {
    let result = ServerResult::CallToolResult(CallToolResult::success(vec![]));
    ServerJsonRpcMessage::response(result, RequestId::Number(id))
}

fn events(
    call: impl Future<Output = Option<ServerJsonRpcMessage>> + Send + 'static,
    rx: mpsc::Receiver<ServerJsonRpcMessage>,
    parking: &Arc<Parking>,
) -> CallEvents {
    CallEvents::new(
        Box::pin(async { call.await.map(Final::Message) }),
        rx,
        parking.clone(),
    )
}

/// (event id, message as JSON or null for priming)
fn seen(e: &ServerSseMessage) -> (String, serde_json::Value) {
    let json = e
        .message
        .as_deref()
        .map(|m| serde_json::to_value(m).unwrap())
        .unwrap_or_default();
    (e.event_id.clone().expect("every event has an id"), json)
}

async fn next(s: &mut (impl Stream<Item = ServerSseMessage> + Unpin)) -> Option<ServerSseMessage> {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("an event or the end within 5s")
}

#[tokio::test]
async fn priming_then_what_the_call_sent_then_its_response() {
    let parking = Arc::default();
    let (tx, rx) = mpsc::channel(4);
    let call = async move {
        tx.send(log("first")).await.unwrap();
        tokio::task::yield_now().await;
        tx.send(log("second")).await.unwrap();
        Some(response(7))
    };
    let all: Vec<_> = events(call, rx, &parking).collect().await;
    let all: Vec<_> = all.iter().map(seen).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[0], ("d0-0".to_string(), serde_json::Value::Null));
    assert_eq!(all[1].1["params"]["data"], "first");
    assert_eq!(all[2].1["params"]["data"], "second");
    assert_eq!(all[3].0, "d0-3");
    assert_eq!(all[3].1["id"], 7);
    assert!(
        parking.parked().is_empty(),
        "a stream that ended is not kept"
    );
}

#[tokio::test]
async fn a_cancelled_call_ends_its_stream_without_a_response() {
    let parking = Arc::default();
    let (_tx, rx) = mpsc::channel(4);
    let all: Vec<_> = events(async { None }, rx, &parking).collect().await;
    assert_eq!(all.len(), 1, "only the priming event");
    assert!(all[0].message.is_none());
}

#[tokio::test]
async fn a_left_stream_runs_on_and_resumes_after_the_last_event_seen() {
    let parking: Arc<Parking> = Arc::default();
    let (tx, rx) = mpsc::channel(4);
    let (go, wait) = oneshot::channel::<()>();
    let call = async move {
        tx.send(log("before")).await.unwrap();
        let _ = wait.await;
        tx.send(log("after")).await.unwrap();
        Some(response(9))
    };
    let mut s = events(call, rx, &parking);
    assert_eq!(seen(&next(&mut s).await.unwrap()).0, "d0-0");
    let before = seen(&next(&mut s).await.unwrap());
    assert_eq!(before.0, "d0-1");
    drop(s); // the client left mid-call

    let mut resumed = parking.resume("d0-1").expect("the stream is parked");
    go.send(())
        .expect("the call is still running after its stream went");
    let after = seen(&next(&mut resumed).await.unwrap());
    assert_eq!(
        (after.0.as_str(), &after.1["params"]["data"]),
        ("d0-2", &"after".into())
    );
    let last = seen(&next(&mut resumed).await.unwrap());
    assert_eq!((last.0.as_str(), &last.1["id"]), ("d0-3", &9.into()));
    assert!(next(&mut resumed).await.is_none(), "the call ended");

    // Resuming from an earlier event replays from there.
    let replay: Vec<_> = parking.resume("d0-0").unwrap().collect().await;
    let ids: Vec<_> = replay.iter().map(|e| seen(e).0).collect();
    assert_eq!(ids, ["d0-1", "d0-2", "d0-3"]);
}

#[test]
fn rmcps_own_event_ids_are_not_taken_for_ours() {
    let parking = Parking::default();
    for id in ["0", "3/17", "d", "d1", "dx-1", "d1-x"] {
        assert!(parse_event_id(id).is_none(), "{id}");
        assert!(parking.resume(id).is_none(), "{id}");
    }
    assert_eq!(parse_event_id("d12-3"), Some((12, 3)));
    assert!(parking.resume("d12-3").is_none(), "not parked");
}

#[test]
fn a_stream_keeps_its_last_events_and_resumes_from_the_oldest_kept() {
    let mut kept = Kept::default();
    for i in 0..MAX_KEPT + 10 {
        kept.push(ServerSseMessage::priming(event_id(0, i), RETRY));
    }
    assert_eq!(kept.events.len(), MAX_KEPT);
    let (at, event) = kept.get(3).expect("the oldest kept");
    assert_eq!(at, 10);
    assert_eq!(event.event_id.as_deref(), Some("d0-10"));
    assert_eq!(kept.get(MAX_KEPT + 9).unwrap().0, MAX_KEPT + 9);
    assert!(kept.get(MAX_KEPT + 10).is_none());
}

#[tokio::test]
async fn a_call_that_only_answered_gives_its_answer_alone_and_nothing_is_kept() {
    let parking = Arc::default();
    let (_tx, rx) = mpsc::channel(4);
    let mut s = events(async { Some(response(3)) }, rx, &parking);
    s.hold(Duration::from_secs(5)).await;
    let Some(Final::Message(answer)) = s.answer_alone() else {
        panic!("the response alone")
    };
    assert_eq!(serde_json::to_value(&answer).unwrap()["id"], 3);
    drop(s);
    assert!(parking.parked().is_empty(), "nothing left to resume");
}

/// The hold waits for the call's first message and hands out nothing; a
/// call that sent more than its answer then streams it all.
#[tokio::test]
async fn hold_waits_for_the_first_message_and_a_call_that_sent_more_streams_it_all() {
    for sent_before_ending in [false, true] {
        let parking = Arc::default();
        let (tx, rx) = mpsc::channel(4);
        let (go, wait) = oneshot::channel::<()>();
        let call = async move {
            tx.send(log("on the way")).await.unwrap();
            let _ = wait.await;
            Some(response(4))
        };
        let mut s = events(call, rx, &parking);
        let mut go = Some(go);
        if sent_before_ending {
            go.take().unwrap().send(()).unwrap();
        }
        s.hold(Duration::from_secs(5)).await;
        assert_eq!(s.index, 0, "the hold hands out nothing");
        assert!(s.answer_alone().is_none(), "a log came first");
        assert!(s.early.is_some(), "the call's first message is ready");
        if let Some(go) = go {
            go.send(()).unwrap();
        }
        let all: Vec<_> = s.collect().await;
        let all: Vec<_> = all.iter().map(seen).collect();
        assert_eq!(all.len(), 3, "priming, log, response: {all:?}");
        assert_eq!(all[1].1["params"]["data"], "on the way");
        assert_eq!(all[2].1["id"], 4);
    }
}

#[tokio::test]
async fn a_cancelled_call_has_no_answer_and_its_stream_ends_without_one() {
    let parking = Arc::default();
    let (_tx, rx) = mpsc::channel(4);
    let mut s = events(async { None }, rx, &parking);
    s.hold(Duration::from_secs(5)).await;
    assert!(s.answer_alone().is_none());
    let all: Vec<_> = s.collect().await;
    assert_eq!(all.len(), 1, "only the priming event");
}
