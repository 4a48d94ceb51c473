//! A task's output and its canonical byte form. The bytes are what workers
//! send, what the coordinator stores, and what replicas are compared by, so
//! there is exactly one encoding per output (all integers little-endian):
//!
//! | kernel        | bytes                                               |
//! |---------------|-----------------------------------------------------|
//! | primes        | count: u64                                          |
//! | montecarlo-pi | inside: u64, samples: u64                           |
//! | hashsearch    | the nonces found, ascending, each a u64 (maybe none) |
//! | mandelbrot    | the band's counts, row-major, each a u32            |
//! | wasm          | the task's outcome (see [`crate::wasm`])            |

use crate::spec::{KernelKind, KernelSpec, TaskDomain};
use crate::wasm::WasmOutcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutput {
    /// primes: how many primes the task's range holds.
    Count(u64),
    /// montecarlo-pi: how many of the task's samples fell inside.
    Samples { inside: u64, samples: u64 },
    /// hashsearch: qualifying nonces, ascending.
    Nonces(Vec<u64>),
    /// mandelbrot: escape-time counts of the task's rows, row-major.
    Iterations(Vec<u32>),
    /// wasm: how the user's kernel ended, and what it wrote.
    Wasm(WasmOutcome),
}

/// Why bytes are not a valid output for a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("a {kernel} output must be {expected}, got {got} bytes")]
    Length {
        kernel: KernelKind,
        expected: String,
        got: usize,
    },
    #[error("implausible output for task {task}: {reason}")]
    Implausible { task: u32, reason: String },
    #[error("task {0} is already collated")]
    AlreadyCollated(u32),
    #[error("task {task} is out of range for a job of {tasks} tasks")]
    NoSuchTask { task: u32, tasks: u32 },
}

impl TaskOutput {
    pub fn encoded_len(&self) -> usize {
        match self {
            TaskOutput::Count(_) => 8,
            TaskOutput::Samples { .. } => 16,
            TaskOutput::Nonces(n) => 8 * n.len(),
            TaskOutput::Iterations(i) => 4 * i.len(),
            TaskOutput::Wasm(outcome) => outcome.encoded_len(),
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        match self {
            TaskOutput::Count(count) => out.extend_from_slice(&count.to_le_bytes()),
            TaskOutput::Samples { inside, samples } => {
                out.extend_from_slice(&inside.to_le_bytes());
                out.extend_from_slice(&samples.to_le_bytes());
            }
            TaskOutput::Nonces(nonces) => nonces
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes())),
            TaskOutput::Iterations(counts) => counts
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes())),
            TaskOutput::Wasm(outcome) => outcome.encode_into(out),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Reads the canonical bytes of a `kind` output. Only the shape is checked
    /// here; [`TaskOutput::check`] checks it against the task.
    pub fn decode(kind: KernelKind, bytes: &[u8]) -> Result<TaskOutput, OutputError> {
        let length = |expected: &str| OutputError::Length {
            kernel: kind,
            expected: expected.to_string(),
            got: bytes.len(),
        };
        let u64s = |bytes: &[u8]| -> Vec<u64> {
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        match kind {
            KernelKind::Primes => {
                let bytes: [u8; 8] = bytes.try_into().map_err(|_| length("8 bytes"))?;
                Ok(TaskOutput::Count(u64::from_le_bytes(bytes)))
            }
            KernelKind::MontecarloPi => {
                if bytes.len() != 16 {
                    return Err(length("16 bytes"));
                }
                let words = u64s(bytes);
                Ok(TaskOutput::Samples {
                    inside: words[0],
                    samples: words[1],
                })
            }
            KernelKind::Hashsearch => {
                if !bytes.len().is_multiple_of(8) {
                    return Err(length("a multiple of 8 bytes"));
                }
                Ok(TaskOutput::Nonces(u64s(bytes)))
            }
            KernelKind::Mandelbrot => {
                if !bytes.len().is_multiple_of(4) {
                    return Err(length("a multiple of 4 bytes"));
                }
                Ok(TaskOutput::Iterations(
                    bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect(),
                ))
            }
            KernelKind::Wasm => WasmOutcome::decode(bytes)
                .map(TaskOutput::Wasm)
                .map_err(|e| OutputError::Length {
                    kernel: kind,
                    expected: format!("an outcome ({e})"),
                    got: bytes.len(),
                }),
        }
    }

    /// Rejects an output that cannot be the right answer for task `index` of a
    /// `tasks`-task job of `spec`: wrong kind or size, counts out of range,
    /// nonces outside the task or out of order. It cannot tell a plausible
    /// wrong answer from the right one; quorum and verification do that.
    pub fn check(&self, spec: &KernelSpec, tasks: u32, index: u32) -> Result<(), OutputError> {
        if index >= tasks {
            return Err(OutputError::NoSuchTask { task: index, tasks });
        }
        let implausible = |reason: String| OutputError::Implausible {
            task: index,
            reason,
        };
        let domain = spec.task(tasks, index);
        match (self, spec, domain) {
            (TaskOutput::Count(count), KernelSpec::Primes(_), TaskDomain::Range { start, end }) => {
                if *count > end - start {
                    return Err(implausible(format!(
                        "{count} primes in a range of {} values",
                        end - start
                    )));
                }
            }
            (
                TaskOutput::Samples { inside, samples },
                KernelSpec::MontecarloPi(_),
                TaskDomain::Range { start, end },
            ) => {
                if *samples != end - start {
                    return Err(implausible(format!(
                        "{samples} samples reported, the task has {}",
                        end - start
                    )));
                }
                if inside > samples {
                    return Err(implausible(format!("{inside} inside of {samples} samples")));
                }
            }
            (
                TaskOutput::Nonces(nonces),
                KernelSpec::Hashsearch(_),
                TaskDomain::Range { start, end },
            ) => {
                if nonces.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(implausible("nonces are not strictly ascending".into()));
                }
                if let Some(n) = nonces.iter().find(|&&n| n < start || n >= end) {
                    return Err(implausible(format!(
                        "nonce {n} is outside the task's range {start}..{end}"
                    )));
                }
            }
            (
                TaskOutput::Iterations(counts),
                KernelSpec::Mandelbrot(p),
                TaskDomain::Rows { count, .. },
            ) => {
                let pixels = p.width as usize * count as usize;
                if counts.len() != pixels {
                    return Err(implausible(format!(
                        "{} counts for a band of {pixels} pixels",
                        counts.len()
                    )));
                }
                if let Some(n) = counts.iter().find(|&&n| n > p.max_iter) {
                    return Err(implausible(format!(
                        "count {n} exceeds max_iter {}",
                        p.max_iter
                    )));
                }
            }
            (TaskOutput::Wasm(outcome), KernelSpec::Wasm(p), TaskDomain::Input { .. }) => {
                outcome.check(&p.limits()).map_err(implausible)?;
            }
            _ => return Err(implausible(format!("not a {} output", spec.kind()))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{HashsearchParams, MandelbrotParams, PrimesParams};

    #[test]
    fn every_output_round_trips_through_its_bytes() {
        let cases = [
            (KernelKind::Primes, TaskOutput::Count(78_498)),
            (
                KernelKind::MontecarloPi,
                TaskOutput::Samples {
                    inside: 3,
                    samples: 4,
                },
            ),
            (KernelKind::Hashsearch, TaskOutput::Nonces(vec![])),
            (KernelKind::Hashsearch, TaskOutput::Nonces(vec![1, 1 << 40])),
            (
                KernelKind::Mandelbrot,
                TaskOutput::Iterations(vec![0, 7, u32::MAX]),
            ),
        ];
        for (kind, output) in cases {
            let bytes = output.to_bytes();
            assert_eq!(bytes.len(), output.encoded_len());
            assert_eq!(TaskOutput::decode(kind, &bytes).unwrap(), output);
        }
        assert_eq!(
            TaskOutput::Count(1).to_bytes(),
            vec![1, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        assert!(TaskOutput::decode(KernelKind::Primes, &[0; 7]).is_err());
        assert!(TaskOutput::decode(KernelKind::MontecarloPi, &[0; 8]).is_err());
        assert!(TaskOutput::decode(KernelKind::Hashsearch, &[0; 9]).is_err());
        assert!(TaskOutput::decode(KernelKind::Mandelbrot, &[0; 6]).is_err());
    }

    #[test]
    fn implausible_outputs_are_rejected() {
        let primes = KernelSpec::Primes(PrimesParams { start: 0, end: 100 });
        TaskOutput::Count(25).check(&primes, 1, 0).unwrap();
        assert!(TaskOutput::Count(101).check(&primes, 1, 0).is_err());
        assert!(TaskOutput::Count(1).check(&primes, 1, 1).is_err());
        assert!(TaskOutput::Nonces(vec![]).check(&primes, 1, 0).is_err());

        let hs = KernelSpec::Hashsearch(HashsearchParams {
            prefix: "a".into(),
            difficulty: 4,
            start: 10,
            end: 20,
        });
        TaskOutput::Nonces(vec![10, 19]).check(&hs, 1, 0).unwrap();
        assert!(TaskOutput::Nonces(vec![19, 10]).check(&hs, 1, 0).is_err());
        assert!(TaskOutput::Nonces(vec![12, 12]).check(&hs, 1, 0).is_err());
        assert!(TaskOutput::Nonces(vec![20]).check(&hs, 1, 0).is_err());

        let mb = KernelSpec::Mandelbrot(MandelbrotParams {
            width: 2,
            height: 2,
            x_min: 0.0,
            x_max: 1.0,
            y_min: 0.0,
            y_max: 1.0,
            max_iter: 9,
        });
        TaskOutput::Iterations(vec![1, 9]).check(&mb, 2, 1).unwrap();
        assert!(
            TaskOutput::Iterations(vec![1, 10])
                .check(&mb, 2, 1)
                .is_err()
        );
        assert!(
            TaskOutput::Iterations(vec![1, 2, 3])
                .check(&mb, 2, 1)
                .is_err()
        );
    }
}
