//! The migration stream: frames of a one-byte tag, a little-endian u64
//! length and the payload. The source sends the header, memory frames
//! (pre-copy passes, then the last dirty pages), the state document and
//! `Complete`; the target answers the header and the completion with `Ack`
//! or `Nack` and a reason, so a refusal reaches the source, which then
//! resumes its guest.

use std::io::{Read, Write};

use super::MigrationError;

pub const HEADER: u8 = 1;
pub const MEMORY: u8 = 2;
pub const STATE: u8 = 3;
pub const COMPLETE: u8 = 4;
pub const ACK: u8 = 0x80;
pub const NACK: u8 = 0x81;

/// Largest frame accepted: a state document or a memory chunk.
const MAX_FRAME: u64 = 64 << 20;

pub fn send(w: &mut impl Write, tag: u8, parts: &[&[u8]]) -> Result<(), MigrationError> {
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let mut head = [0u8; 9];
    head[0] = tag;
    head[1..].copy_from_slice(&len.to_le_bytes());
    w.write_all(&head)?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// A memory frame: the guest-physical address, then the bytes.
pub fn send_memory(w: &mut impl Write, gpa: u64, data: &[u8]) -> Result<(), MigrationError> {
    send(w, MEMORY, &[&gpa.to_le_bytes(), data])
}

pub fn recv(r: &mut impl Read) -> Result<(u8, Vec<u8>), MigrationError> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[1..]);
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(MigrationError::Protocol(format!("a {len}-byte frame")));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// Waits for the peer's `Ack`; a `Nack` carries its reason.
pub fn expect_ack(r: &mut impl Read) -> Result<(), MigrationError> {
    match recv(r)? {
        (ACK, _) => Ok(()),
        (NACK, reason) => Err(MigrationError::Refused(
            String::from_utf8_lossy(&reason).into_owned(),
        )),
        (tag, _) => Err(MigrationError::Protocol(format!(
            "expected an answer, got frame {tag}"
        ))),
    }
}

/// Splits a memory frame's body.
pub fn memory_frame(body: &[u8]) -> Result<(u64, &[u8]), MigrationError> {
    if body.len() < 8 {
        return Err(MigrationError::Protocol("short memory frame".into()));
    }
    let (a, data) = body.split_at(8);
    let mut gpa = [0u8; 8];
    gpa.copy_from_slice(a);
    Ok((u64::from_le_bytes(gpa), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        send_memory(&mut buf, 0x2000, b"abc").unwrap();
        send(&mut buf, NACK, &[b"no room"]).unwrap();
        let mut r = buf.as_slice();
        let (tag, body) = recv(&mut r).unwrap();
        assert_eq!(tag, MEMORY);
        assert_eq!(memory_frame(&body).unwrap(), (0x2000, &b"abc"[..]));
        let e = expect_ack(&mut r).unwrap_err();
        assert!(
            matches!(e, MigrationError::Refused(ref s) if s == "no room"),
            "{e}"
        );
        assert!(recv(&mut r).is_err());
    }
}
