//! `pods/attach` over a real WebSocket: kube's client on a TCP connection to
//! a server that speaks the API server's channel protocol (`v4.channel.k8s.io`:
//! each binary frame starts with its channel, 0 stdin, 1 stdout), standing in
//! for kubelet's side of a container's stdio.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::*;

/// Accepts one attach and answers each stdin frame on stdout, upper-cased
/// (so what comes back is the container's answer, not an echo of the frame).
/// Returns the request's path and query.
// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn container(listener: TcpListener) -> String {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut seen = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, mut res: Response| {
        seen = req.uri().to_string();
        let protocol = "v4.channel.k8s.io".parse().unwrap();
        res.headers_mut().insert("sec-websocket-protocol", protocol);
        Ok(res)
    })
    .await
    .unwrap();
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

#[tokio::test]
async fn stdio_goes_through_pods_attach_over_a_websocket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(container(listener));
    let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let rt = KubernetesRuntime::new(
        client,
        KubeSettings {
            namespace: "fleet-ns".into(),
            pull: PullPolicy::Missing,
            stop_timeout: Duration::from_secs(1),
            owner_deployment: None,
        },
    );
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
