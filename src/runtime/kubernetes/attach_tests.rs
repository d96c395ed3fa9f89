//! `pods/attach` over a real WebSocket: kube's client on a TCP connection to
//! a server that speaks the API server's channel protocol (`v4.channel.k8s.io`:
//! each binary frame starts with its channel, 0 stdin, 1 stdout, 2 stderr), standing in
//! for kubelet's side of a container's stdio.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts one attach with the API server's channel protocol; returns it and
/// the request's path and query.
// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn accept(listener: TcpListener) -> (Ws, String) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut seen = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, mut res: Response| {
        seen = req.uri().to_string();
        let protocol = "v4.channel.k8s.io".parse().unwrap();
        res.headers_mut().insert("sec-websocket-protocol", protocol);
        Ok(res)
    })
    .await
    .unwrap();
    (ws, seen)
}

/// Accepts one attach and answers each stdin frame on stdout, upper-cased
/// (so what comes back is the container's answer, not an echo of the frame).
/// Returns the request's path and query.
async fn container(listener: TcpListener) -> String {
    let (mut ws, seen) = accept(listener).await;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(frame) = msg else {
            continue;
        };
        if frame.first() == Some(&0) {
            let mut out = vec![1u8];
            out.extend(frame[1..].to_ascii_uppercase());
            ws.send(Message::Binary(out.into())).await.unwrap();
        }
    }
    seen
}

/// Accepts one attach, writes `lines` on stderr (channel 2) and ends the
/// session, as kubelet does when the container stops. Returns the request's
/// path and query.
async fn stderr_writer(listener: TcpListener, lines: &'static [&'static str]) -> String {
    let (mut ws, seen) = accept(listener).await;
    for line in lines {
        let mut frame = vec![2u8];
        frame.extend(line.as_bytes());
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    ws.close(None).await.unwrap();
    seen
}

/// The backend, its API server at `listener`.
fn runtime(listener: &TcpListener) -> KubernetesRuntime {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    KubernetesRuntime::new(
        client,
        KubeSettings {
            namespace: "fleet-ns".into(),
            pull: PullPolicy::Missing,
            stop_timeout: Duration::from_secs(1),
            owner_deployment: None,
        },
    )
}

#[tokio::test]
async fn stderr_is_read_through_its_own_attach_until_the_container_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rt = runtime(&listener);
    let server = tokio::spawn(stderr_writer(listener, &["starting\n", "ready on stdio\n"]));
    let mut stderr = tokio::time::timeout(Duration::from_secs(10), rt.attach_stderr("p1"))
        .await
        .expect("attach timed out")
        .unwrap();
    let mut got = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut got),
    )
    .await
    .expect("stderr did not end with the session")
    .unwrap();
    assert_eq!(got, "starting\nready on stdio\n");
    assert_eq!(
        server.await.unwrap(),
        "/api/v1/namespaces/fleet-ns/pods/p1/attach?&stderr=true&container=server"
    );
}

#[tokio::test]
async fn stdio_goes_through_pods_attach_over_a_websocket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rt = runtime(&listener);
    let server = tokio::spawn(container(listener));
    let stdio = tokio::time::timeout(Duration::from_secs(10), rt.attach("p1"))
        .await
        .expect("attach timed out")
        .unwrap();
    let (mut stdin, mut stdout) = (stdio.stdin, BufReader::new(stdio.stdout));
    for line in ["{\"jsonrpc\":\"2.0\",\"id\":1}\n", "second line\n"] {
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut got))
            .await
            .expect("no answer on stdout")
            .unwrap();
        assert_eq!(got, line.to_ascii_uppercase());
    }
    // Dropping the stdio ends the session (no attach left open).
    drop((stdin, stdout));
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the attach was not closed")
        .unwrap();
    assert_eq!(
        seen,
        "/api/v1/namespaces/fleet-ns/pods/p1/attach?&stdin=true&stdout=true&container=server"
    );
}
