//! gRPC's length-prefixed messages, read only as far as their prefixes.
//!
//! A gRPC request body is a stream of messages, each a 1-byte flag and a
//! 4-byte big-endian length before the payload. A stream may rightly run
//! for hours, so the listener's `max_body_size` bounds each message of a
//! gRPC request instead of the whole stream (gRPC servers have the same
//! bound, 4 MiB by default); this reader finds the lengths as the body
//! passes through, without holding any of it.

/// Bytes before each message's payload.
const PREFIX: usize = 5;

/// Where a request stream stands: in a prefix, or in a payload.
#[derive(Clone, Debug, Default)]
pub struct MessageLimit {
    prefix: [u8; PREFIX],
    /// Bytes of the current prefix seen so far.
    have: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
}

impl MessageLimit {
    /// Reads `chunk`, the next piece of the body; `Err(len)` names the
    /// first message longer than `max`.
    pub fn feed(&mut self, mut chunk: &[u8], max: u64) -> Result<(), u64> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                self.remaining -= take as u64;
                chunk = &chunk[take..];
                continue;
            }
            let take = (PREFIX - self.have).min(chunk.len());
            self.prefix[self.have..self.have + take].copy_from_slice(&chunk[..take]);
            self.have += take;
            chunk = &chunk[take..];
            if self.have == PREFIX {
                self.have = 0;
                let len = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
                if len > max {
                    return Err(len);
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_split() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(100));
        for split in 1..stream.len() {
            let mut l = MessageLimit::default();
            for piece in stream.chunks(split) {
                assert_eq!(l.feed(piece, 100), Ok(()), "split {split}");
            }
        }
    }

    #[test]
    fn a_long_message_is_found_wherever_its_prefix_is_cut() {
        let mut stream = message(3);
        stream.extend(message(101));
        for split in 1..=stream.len() {
            let mut l = MessageLimit::default();
            let found = stream
                .chunks(split)
                .map(|p| l.feed(p, 100))
                .find(Result::is_err);
            assert_eq!(found, Some(Err(101)), "split {split}");
        }
    }

    #[test]
    fn the_largest_length_is_read_without_overflow() {
        let mut l = MessageLimit::default();
        assert_eq!(l.feed(&[0, 0xff, 0xff, 0xff, 0xff], u64::MAX), Ok(()));
        assert_eq!(l.feed(&[1; 1000], u64::MAX), Ok(()));
        let mut l = MessageLimit::default();
        assert_eq!(
            l.feed(&[0, 0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(u64::from(u32::MAX))
        );
    }
}
