//! The binary results frame: how task outputs travel from workers to the
//! coordinator. One WebSocket binary frame, all integers little-endian:
//!
//! ```text
//! offset  size  field
//! 0       1     frame type, 0x01 = results
//! 1       8     batch id (u64)
//! 9       4     n, the number of task results that follow (u32)
//! 13      ...   n times: task index (u32), output length L (u32), L bytes of output
//! ```
//!
//! A *digest-only* entry (a replica that sends its output's SHA-256 instead
//! of the output, when its batch says `digest_only` for the task) has
//! `L = 0xFFFF_FFFF` and then, instead of the output: the output's length
//! (u32), the fuel it reports (u64; a wasm outcome's fuel used, else 0) and
//! the 32 bytes of the output's SHA-256: 52 bytes in all.
//!
//! An *uploaded* entry (an output over [`crate::worker::OUTPUT_BLOB_BYTES`],
//! which the worker stored as a blob under its batch's capability before
//! sending this) has `L = 0xFFFF_FFFE` and then the same 44 bytes: the
//! output's length, its fuel and its SHA-256, which is the blob's name. The
//! coordinator reads the blob and takes it as the output; a frame that
//! names a blob it does not hold is refused like any impossible output.
//!
//! The output bytes are the kernel's canonical encoding
//! ([`grid_kernels::output`]): a Mandelbrot band is 4 bytes a pixel rather
//! than a JSON array of numbers, and the bytes replicas are compared by are
//! exactly the bytes that were sent.
//!
//! Decoding does not copy: each output is a [`Bytes`] view of the frame it
//! came in. A frame of 100,000 tiny outputs is one allocation, not 100,000
//! scattered ones that the store then has to chase through the heap.

use bytes::Bytes;
use grid_kernels::TaskOutput;

use crate::{CloseCode, MAX_RESULTS_FRAME_BYTES};

/// The first byte of a results frame.
pub const RESULTS_FRAME_TYPE: u8 = 0x01;
/// The output length that marks a digest-only entry.
pub const DIGEST_ONLY_MARKER: u32 = u32::MAX;
/// The output length that marks an uploaded entry.
pub const UPLOADED_MARKER: u32 = u32::MAX - 1;
/// Outputs this long or shorter always travel in full: a digest-only entry
/// would be no smaller.
pub const DIGEST_ONLY_MIN_BYTES: usize = 64;
const HEADER_BYTES: usize = 13;
const ENTRY_HEADER_BYTES: usize = 8;
const DIGEST_ENTRY_BYTES: usize = 4 + 8 + 32;

/// One task's output in a results frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub task: u32,
    /// A view of the frame's bytes; cloning it copies nothing. Empty for a
    /// digest-only result.
    pub output: Bytes,
    /// Set for a digest-only result: what the worker sent instead.
    pub digest_only: Option<DigestOnly>,
    /// Set for an uploaded result: the blob that holds the output. Never
    /// set together with `digest_only`.
    pub uploaded: Option<DigestOnly>,
}

/// What a digest-only or uploaded result says of the output it did not
/// send in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestOnly {
    /// SHA-256 of the output bytes.
    pub digest: [u8; 32],
    /// The output's length in bytes.
    pub len: u32,
    /// The fuel the output reports (a wasm outcome's fuel used, else 0).
    pub fuel: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsFrame {
    pub batch: u64,
    pub results: Vec<TaskResult>,
}

/// Why a binary frame is not a valid results frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("binary frame of {0} bytes exceeds the {MAX_RESULTS_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("unknown binary frame type {0:#04x}")]
    UnknownType(u8),
    #[error("binary frame truncated: {0}")]
    Truncated(&'static str),
    #[error("binary frame has {0} bytes after its last result")]
    TrailingBytes(usize),
    #[error("results frame is empty")]
    Empty,
}

impl FrameError {
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooLarge(_) => CloseCode::FrameTooLarge,
            _ => CloseCode::MalformedFrame,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
}

impl ResultsFrame {
    /// Decodes a frame held in a plain slice, copying it once.
    pub fn decode(bytes: &[u8]) -> Result<ResultsFrame, FrameError> {
        if bytes.len() > MAX_RESULTS_FRAME_BYTES {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        Self::decode_shared(&Bytes::copy_from_slice(bytes))
    }

    /// Decodes a frame without copying: the outputs are views of `frame`.
    pub fn decode_shared(frame: &Bytes) -> Result<ResultsFrame, FrameError> {
        if frame.len() > MAX_RESULTS_FRAME_BYTES {
            return Err(FrameError::TooLarge(frame.len()));
        }
        let mut reader = Reader { bytes: frame };
        let kind = reader.take(1, "frame type")?[0];
        if kind != RESULTS_FRAME_TYPE {
            return Err(FrameError::UnknownType(kind));
        }
        let batch = reader.u64("batch id")?;
        let count = reader.u32("result count")? as usize;
        if count == 0 {
            return Err(FrameError::Empty);
        }
        // Each entry takes at least its 8-byte header: a count that cannot fit
        // is refused before anything is allocated for it.
        if count > reader.bytes.len() / ENTRY_HEADER_BYTES {
            return Err(FrameError::Truncated("fewer results than the count says"));
        }
        let mut results = Vec::with_capacity(count);
        for _ in 0..count {
            let task = reader.u32("task index")?;
            let len = reader.u32("output length")?;
            if len == DIGEST_ONLY_MARKER || len == UPLOADED_MARKER {
                let sent = DigestOnly {
                    len: reader.u32("digest entry's output length")?,
                    fuel: reader.u64("digest entry's fuel")?,
                    digest: reader
                        .take(32, "digest entry's digest")?
                        .try_into()
                        .expect("32 bytes"),
                };
                let uploaded = len == UPLOADED_MARKER;
                results.push(TaskResult {
                    task,
                    output: Bytes::new(),
                    digest_only: (!uploaded).then_some(sent),
                    uploaded: uploaded.then_some(sent),
                });
                continue;
            }
            let output = frame.slice_ref(reader.take(len as usize, "output bytes")?);
            results.push(TaskResult {
                task,
                output,
                digest_only: None,
                uploaded: None,
            });
        }
        if !reader.bytes.is_empty() {
            return Err(FrameError::TrailingBytes(reader.bytes.len()));
        }
        Ok(ResultsFrame { batch, results })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut builder = ResultsFrameBuilder::new(self.batch);
        for result in &self.results {
            match (result.digest_only, result.uploaded) {
                (Some(sent), _) => builder.push_digest(result.task, sent),
                (None, Some(sent)) => builder.push_uploaded(result.task, sent),
                (None, None) => builder.push_bytes(result.task, &result.output),
            }
        }
        builder.finish()
    }
}

/// Builds a results frame output by output, without intermediate copies.
#[derive(Debug)]
pub struct ResultsFrameBuilder {
    bytes: Vec<u8>,
    count: u32,
}

impl ResultsFrameBuilder {
    pub fn new(batch: u64) -> ResultsFrameBuilder {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(RESULTS_FRAME_TYPE);
        bytes.extend_from_slice(&batch.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        ResultsFrameBuilder { bytes, count: 0 }
    }

    pub fn push(&mut self, task: u32, output: &TaskOutput) {
        self.bytes.extend_from_slice(&task.to_le_bytes());
        self.bytes
            .extend_from_slice(&(output.encoded_len() as u32).to_le_bytes());
        output.encode_into(&mut self.bytes);
        self.count += 1;
    }

    pub fn push_bytes(&mut self, task: u32, output: &[u8]) {
        self.bytes.extend_from_slice(&task.to_le_bytes());
        self.bytes
            .extend_from_slice(&(output.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(output);
        self.count += 1;
    }

    /// A digest-only entry: the output's SHA-256, length and fuel instead
    /// of the output.
    pub fn push_digest(&mut self, task: u32, sent: DigestOnly) {
        self.push_reference(task, DIGEST_ONLY_MARKER, sent);
    }

    /// An uploaded entry: the output is blob `sent.digest`, stored already.
    pub fn push_uploaded(&mut self, task: u32, sent: DigestOnly) {
        self.push_reference(task, UPLOADED_MARKER, sent);
    }

    fn push_reference(&mut self, task: u32, marker: u32, sent: DigestOnly) {
        self.bytes.extend_from_slice(&task.to_le_bytes());
        self.bytes.extend_from_slice(&marker.to_le_bytes());
        self.bytes.extend_from_slice(&sent.len.to_le_bytes());
        self.bytes.extend_from_slice(&sent.fuel.to_le_bytes());
        self.bytes.extend_from_slice(&sent.digest);
        self.count += 1;
    }

    /// The size of a digest-only entry.
    pub const DIGEST_ENTRY_BYTES: usize = ENTRY_HEADER_BYTES + DIGEST_ENTRY_BYTES;

    /// Bytes the frame would have if finished now.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The size a frame grows by when `output` is pushed.
    pub fn entry_bytes(output: &TaskOutput) -> usize {
        ENTRY_HEADER_BYTES + output.encoded_len()
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes[9..HEADER_BYTES].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_as_documented() {
        let mut builder = ResultsFrameBuilder::new(0x0102);
        builder.push(7, &TaskOutput::Count(5));
        let bytes = builder.finish();
        assert_eq!(
            bytes,
            [
                vec![0x01],
                vec![0x02, 0x01, 0, 0, 0, 0, 0, 0],
                vec![1, 0, 0, 0],
                vec![7, 0, 0, 0],
                vec![8, 0, 0, 0],
                vec![5, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat()
        );
        let frame = ResultsFrame::decode(&bytes).unwrap();
        assert_eq!(
            frame,
            ResultsFrame {
                batch: 0x0102,
                results: vec![TaskResult {
                    task: 7,
                    output: Bytes::copy_from_slice(&5u64.to_le_bytes()),
                    digest_only: None,
                    uploaded: None,
                }]
            }
        );
    }

    #[test]
    fn a_digest_only_entry_is_as_documented() {
        let sent = DigestOnly {
            digest: [0xab; 32],
            len: 1000,
            fuel: 0x0102,
        };
        let mut builder = ResultsFrameBuilder::new(1);
        builder.push_digest(3, sent);
        builder.push_bytes(4, b"xyz");
        let bytes = builder.finish();
        assert_eq!(
            &bytes[13..13 + ResultsFrameBuilder::DIGEST_ENTRY_BYTES],
            &[
                vec![3, 0, 0, 0],
                vec![0xff; 4],
                vec![0xe8, 0x03, 0, 0],
                vec![0x02, 0x01, 0, 0, 0, 0, 0, 0],
                vec![0xab; 32],
            ]
            .concat()[..]
        );
        let frame = ResultsFrame::decode(&bytes).unwrap();
        assert_eq!(frame.results[0].digest_only, Some(sent));
        assert!(frame.results[0].output.is_empty());
        assert_eq!(frame.results[1].output[..], b"xyz"[..]);
        assert_eq!(frame.encode(), bytes);
        assert!(matches!(
            ResultsFrame::decode(&bytes[..13 + 20]),
            Err(FrameError::Truncated(_))
        ));
    }

    #[test]
    fn an_uploaded_entry_differs_from_a_digest_only_one_in_its_marker_alone() {
        let sent = DigestOnly {
            digest: [0xcd; 32],
            len: 3 << 20,
            fuel: 9,
        };
        let mut digest = ResultsFrameBuilder::new(1);
        digest.push_digest(3, sent);
        let mut uploaded = ResultsFrameBuilder::new(1);
        uploaded.push_uploaded(3, sent);
        let (digest, uploaded) = (digest.finish(), uploaded.finish());
        assert_eq!(uploaded[17..21], [0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(digest[..17], uploaded[..17]);
        assert_eq!(digest[21..], uploaded[21..]);
        let frame = ResultsFrame::decode(&uploaded).unwrap();
        assert_eq!(frame.results[0].uploaded, Some(sent));
        assert_eq!(frame.results[0].digest_only, None);
        assert!(frame.results[0].output.is_empty());
        assert_eq!(frame.encode(), uploaded);
    }

    #[test]
    fn shared_decoding_views_the_frame_instead_of_copying_it() {
        let mut builder = ResultsFrameBuilder::new(3);
        builder.push(0, &TaskOutput::Count(1));
        builder.push(1, &TaskOutput::Count(2));
        let frame = Bytes::from(builder.finish());
        let decoded = ResultsFrame::decode_shared(&frame).unwrap();
        let within = frame.as_ptr_range();
        for result in &decoded.results {
            assert!(
                within.contains(&result.output.as_ptr()),
                "task {}",
                result.task
            );
        }
        assert_eq!(decoded, ResultsFrame::decode(&frame).unwrap());
        assert_eq!(decoded.results[1].output[..], 2u64.to_le_bytes());
    }

    #[test]
    fn malformed_frames_are_refused() {
        let good = ResultsFrame {
            batch: 1,
            results: vec![TaskResult {
                task: 0,
                output: Bytes::from_static(&[1, 2, 3]),
                digest_only: None,
                uploaded: None,
            }],
        }
        .encode();
        assert_eq!(
            ResultsFrame::decode(&[]),
            Err(FrameError::Truncated("frame type"))
        );
        assert_eq!(ResultsFrame::decode(&[9]), Err(FrameError::UnknownType(9)));
        assert!(matches!(
            ResultsFrame::decode(&good[..good.len() - 1]),
            Err(FrameError::Truncated(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            ResultsFrame::decode(&trailing),
            Err(FrameError::TrailingBytes(1))
        );
        let mut lying_count = good.clone();
        lying_count[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ResultsFrame::decode(&lying_count),
            Err(FrameError::Truncated(_))
        ));
        let empty = ResultsFrameBuilder::new(1).finish();
        assert_eq!(ResultsFrame::decode(&empty), Err(FrameError::Empty));
        let huge = vec![1u8; MAX_RESULTS_FRAME_BYTES + 1];
        assert_eq!(
            ResultsFrame::decode(&huge).unwrap_err().close_code(),
            CloseCode::FrameTooLarge
        );
    }

    proptest! {
        #[test]
        fn frames_round_trip(batch: u64, results in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 1..20)) {
            let frame = ResultsFrame { batch, results: results.into_iter().map(|(task, output)| TaskResult { task, output: output.into(), digest_only: None, uploaded: None }).collect() };
            prop_assert_eq!(ResultsFrame::decode(&frame.encode()).unwrap(), frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ResultsFrame::decode(&bytes);
        }
    }
}
