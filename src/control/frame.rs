//! Framing on the control socket: a 4-byte big-endian length, then that many bytes of
//! JSON. Frames above [`MAX_FRAME`] are refused before anything is allocated for them.

use std::io::{self, Read, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The length a frame's header announces, refused above [`MAX_FRAME`].
pub fn header_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        Err(FrameError::TooLarge(len))
    } else {
        Ok(len)
    }
}

fn eof_to(e: io::Error, first: bool) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        if first {
            FrameError::Closed
        } else {
            FrameError::Truncated
        }
    } else {
        FrameError::Io(e)
    }
}

/// Decodes the first frame of `buf`, a byte stream: its payload and how many bytes of
/// `buf` it took, or `None` while the frame is not complete. Pure: no I/O.
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = header_len(*header)?;
    let end = len.checked_add(4).ok_or(FrameError::TooLarge(len))?;
    Ok(buf.get(4..end).map(|payload| (payload, end)))
}

pub async fn read_async<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    let n = r.read(&mut header).await?;
    if n == 0 {
        return Err(FrameError::Closed);
    }
    r.read_exact(&mut header[n..])
        .await
        .map_err(|e| eof_to(e, false))?;
    let len = header_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| eof_to(e, false))?;
    Ok(body)
}

/// `value` as one frame: the 4-byte length and the JSON, in one buffer. The JSON is
/// written after room for the length, which goes in once the JSON's size is known, so
/// nothing is copied to frame it. `capacity` is a guess at the frame's size.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(capacity.max(4));
    buf.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut buf, value).map_err(io::Error::other)?;
    let len = buf.len().saturating_sub(4);
    let len = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    if let Some(header) = buf.first_chunk_mut::<4>() {
        *header = len.to_be_bytes();
    }
    Ok(buf)
}

/// Writes a frame made by [`encode`], as it is.
pub async fn send_async<W: AsyncWriteExt + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

pub fn read_sync<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).map_err(|e| eof_to(e, true))?;
    let len = header_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| eof_to(e, false))?;
    Ok(body)
}

pub fn write_sync<W: Write>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_frames_from_a_stream() {
        let mut bytes = Vec::new();
        write_sync(&mut bytes, b"{}").unwrap_or_default();
        assert!(matches!(decode(&bytes[..3]), Ok(None)));
        assert!(matches!(decode(&bytes[..5]), Ok(None)));
        assert!(matches!(decode(&bytes), Ok(Some((b"{}", 6)))));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(decode(&huge), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn an_encoded_frame_is_the_written_one() {
        let value = serde_json::json!({"response": "done", "message": "ok"});
        let body = serde_json::to_vec(&value).unwrap_or_default();
        let mut written = Vec::new();
        write_sync(&mut written, &body).unwrap_or_default();
        for capacity in [0, 4, 1000] {
            let frame = encode(&value, capacity).unwrap_or_default();
            assert_eq!(frame, written);
            assert!(matches!(decode(&frame), Ok(Some((b, n))) if b == body && n == frame.len()));
        }
    }
}
