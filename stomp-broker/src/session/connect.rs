//! CONNECT and STOMP: version negotiation, authentication, heart-beats.

use stomp_codec::{Command, Frame, Version};

use super::{Flow, Outcome, Session};
use crate::error::StompError;
use crate::{ConnectRequest, SessionInfo};

/// The versions this broker speaks, for `ERROR` frames.
const SUPPORTED: &str = "1.0,1.1,1.2";

impl Session {
    pub(super) async fn connect(&mut self, frame: Frame) -> Outcome {
        if !matches!(frame.command(), Command::Connect | Command::Stomp) {
            return Err(StompError::new(format!("expected CONNECT, got {}", frame.command()))
                .detail("The first frame of a session must be CONNECT (or STOMP)."));
        }
        let version = Version::negotiate(frame.header("accept-version")).ok_or_else(|| {
            StompError::new("unsupported STOMP version")
                .detail(format!("This server speaks STOMP {SUPPORTED}."))
                .header("version", SUPPORTED)
        })?;
        let (client_send, client_receive) = match version {
            Version::V1_0 => (0, 0),
            Version::V1_1 | Version::V1_2 => parse_heart_beat(frame.header("heart-beat"))?,
        };
        let id = self.num.to_string();
        let header = |name| frame.header(name).and_then(|v| std::str::from_utf8(v).ok());
        let request = ConnectRequest {
            login: header("login"),
            passcode: header("passcode"),
            host: header("host"),
            frame: &frame,
            session_id: &id,
            transport: self.transport,
            peer: self.peer,
        };
        let principal = self.shared.authenticator.authenticate(&request).await?;
        self.heartbeat = self.shared.heartbeat.negotiate(client_send, client_receive);
        let connected = Frame::new(Command::Connected)
            .with_header("version", version.as_str())
            .with_header("heart-beat", self.heartbeat.header())
            .with_header("server", self.shared.server_name.clone())
            .with_header("session", id.clone())
            .with_header("user-name", principal.name().to_owned());
        self.info = Some(SessionInfo {
            id: id.into(),
            principal,
            version,
            transport: self.transport,
            peer: self.peer,
            num: self.num,
        });
        self.outbox.push_frame(connected);
        Ok(Flow::Continue)
    }
}

/// `heart-beat: cx,cy` in milliseconds; absent means `0,0`.
fn parse_heart_beat(value: Option<&[u8]>) -> Result<(u64, u64), StompError> {
    let Some(value) = value else { return Ok((0, 0)) };
    let invalid = || {
        StompError::new("invalid heart-beat header")
            .detail("The heart-beat header must be two non-negative integers (milliseconds), as in 'heart-beat:10000,10000'.")
    };
    let text = std::str::from_utf8(value).map_err(|_| invalid())?;
    let (send, receive) = text.split_once(',').ok_or_else(invalid)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
    Ok((number(send)?, number(receive)?))
}

#[cfg(test)]
mod tests {
    use super::parse_heart_beat;

    #[test]
    fn heart_beat_header() {
        assert_eq!(parse_heart_beat(None), Ok((0, 0)));
        assert_eq!(parse_heart_beat(Some(b"10000,5000")), Ok((10000, 5000)));
        for bad in [&b"10000"[..], b"a,b", b"-1,0", b""] {
            assert!(parse_heart_beat(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
