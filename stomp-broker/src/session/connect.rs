//! CONNECT and STOMP: version negotiation, authentication, heart-beats.

use stomp_codec::{Command, Frame, Version};

use super::{Flow, Outcome, Session};
use crate::error::StompError;
use crate::stats::ErrorReason;
use crate::{ConnectRequest, SessionInfo};

/// The versions this broker speaks, for `ERROR` frames.
const SUPPORTED: &str = "1.0,1.1,1.2";

impl Session {
    pub(super) async fn connect(&mut self, frame: Frame) -> Outcome {
        if !matches!(frame.command(), Command::Connect | Command::Stomp) {
            return Err(StompError::new(format!("expected CONNECT, got {}", frame.command()))
                .detail("The first frame of a session must be CONNECT (or STOMP)."));
        }
        let version = negotiate(frame.header("accept-version"), self.max_version).ok_or_else(|| {
            let detail = match self.max_version {
                Some(max) => format!("This server speaks STOMP {SUPPORTED}; the WebSocket subprotocol agreed allows up to {max}."),
                None => format!("This server speaks STOMP {SUPPORTED}."),
            };
            StompError::new("unsupported STOMP version").detail(detail).header("version", SUPPORTED)
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
        let principal = self
            .shared
            .authenticator
            .authenticate(&request)
            .await
            .map_err(|r| StompError::from(r).reason(ErrorReason::Auth))?;
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

/// The version for an `accept-version` header, no newer than `max` (the
/// WebSocket subprotocol's version, when one was agreed).
fn negotiate(accept_version: Option<&[u8]>, max: Option<Version>) -> Option<Version> {
    let Some(max) = max else { return Version::negotiate(accept_version) };
    let Some(list) = accept_version else { return Some(Version::V1_0) };
    list.split(|&b| b == b',')
        .filter_map(|v| Version::from_bytes(v.trim_ascii()))
        .filter(|v| *v <= max)
        .max()
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
    use super::{Version, negotiate, parse_heart_beat};

    #[test]
    fn subprotocol_caps_the_version() {
        assert_eq!(negotiate(Some(b"1.1,1.2"), Some(Version::V1_1)), Some(Version::V1_1));
        assert_eq!(negotiate(Some(b"1.2"), Some(Version::V1_1)), None);
        assert_eq!(negotiate(None, Some(Version::V1_2)), Some(Version::V1_0));
        assert_eq!(negotiate(Some(b"1.0,1.2"), None), Some(Version::V1_2));
    }

    #[test]
    fn heart_beat_header() {
        assert_eq!(parse_heart_beat(None), Ok((0, 0)));
        assert_eq!(parse_heart_beat(Some(b"10000,5000")), Ok((10000, 5000)));
        for bad in [&b"10000"[..], b"a,b", b"-1,0", b""] {
            assert!(parse_heart_beat(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
