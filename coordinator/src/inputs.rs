//! A wasm job's tasks as the coordinator hands them out: each task's stdin
//! and its name, split once from the job's input blobs (at submission, and
//! again when a restarted coordinator resumes the job) and then sent in
//! batches: inline, or for an input file over [`INLINE_INPUT_BYTES`] as a
//! reference to its blob, which the worker fetches under the batch's
//! capability (such a file is never read by the coordinator). The blobs
//! are read through functions, so the rules here (how lines and files
//! become tasks, what is too large) are tested without a disk.

use bytes::Bytes;
use grid_kernels::ContentDigest;
use grid_kernels::wasm::{WasmInputs, split_lines};
use grid_protocol::TaskInput;
use grid_protocol::messages::INLINE_INPUT_BYTES;

/// The most bytes of stdin one task may have inline: a line of a lines
/// input (a batch carries those inline, and a worker must hold a batch).
pub const MAX_TASK_INPUT_BYTES: usize = 1 << 20;
/// The most bytes of an input file, which travels as a blob past
/// [`INLINE_INPUT_BYTES`]: a worker holds one in memory while it runs.
pub const MAX_INPUT_FILE_BYTES: u64 = 256 << 20;
/// The most tasks a wasm job may have.
pub const MAX_TASKS: u32 = 1_000_000;
/// The most input bytes one batch should carry; batches of a job with large
/// inputs are capped at fewer tasks to stay under it.
pub const BATCH_INPUT_BYTES: usize = 4 << 20;

/// Each task's stdin and name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskInputs {
    inputs: Vec<TaskInput>,
    names: Vec<String>,
}

/// Why a job's inputs cannot be made into tasks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(
        "no blob {0}: upload it first with PUT /api/blobs/{0} (grid submit wasm does this for you)"
    )]
    Missing(ContentDigest),
    #[error("cannot read blob {0}: {1}")]
    Unreadable(ContentDigest, String),
    #[error("the inputs make no tasks: {0}")]
    Empty(&'static str),
    #[error("{what} is {bytes} bytes; a task's input may be at most {limit} bytes")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("the inputs make {count} tasks; a job may have at most {MAX_TASKS}")]
    TooMany { count: u64 },
    #[error("the inputs make {inputs} tasks but the request asks for {tasks}")]
    Count { inputs: u32, tasks: u32 },
    #[error("two input files are named {0:?}: names must be unique")]
    DuplicateName(String),
    #[error(
        "input file name {0:?} is not a plain file name (nor index.json, which grid results writes)"
    )]
    BadName(String),
}

impl TaskInputs {
    /// `tasks` tasks with empty stdin, named by their index.
    pub fn empty(tasks: u32) -> Result<TaskInputs, InputError> {
        if tasks == 0 {
            return Err(InputError::Empty("a job needs at least one task"));
        }
        if tasks > MAX_TASKS {
            return Err(InputError::TooMany {
                count: u64::from(tasks),
            });
        }
        Ok(TaskInputs {
            inputs: vec![TaskInput::default(); tasks as usize],
            names: (0..tasks).map(|t| t.to_string()).collect(),
        })
    }

    /// Splits `inputs` into tasks, reading each blob with `read` (which says
    /// `Ok(None)` for a blob the store lacks) unless `size` (a stored blob's
    /// length) says it travels as a reference. `tasks`, if given, must agree.
    pub fn load(
        inputs: &WasmInputs,
        tasks: Option<u32>,
        size: impl Fn(&ContentDigest) -> Option<u64>,
        mut read: impl FnMut(&ContentDigest) -> std::io::Result<Option<Bytes>>,
    ) -> Result<TaskInputs, InputError> {
        let mut fetch = |digest: &ContentDigest| match read(digest) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(InputError::Missing(*digest)),
            Err(e) => Err(InputError::Unreadable(*digest, e.to_string())),
        };
        let loaded = match inputs {
            WasmInputs::Lines(digest) => {
                let text = fetch(digest)?;
                let lines = split_lines(&text);
                check_count(lines.len())?;
                let mut loaded = TaskInputs::default();
                for (i, line) in lines.into_iter().enumerate() {
                    if line.len() > MAX_TASK_INPUT_BYTES {
                        return Err(InputError::TooLarge {
                            what: format!("line {i} (counting from 0)"),
                            bytes: line.len() as u64,
                            limit: MAX_TASK_INPUT_BYTES as u64,
                        });
                    }
                    loaded.inputs.push(TaskInput::Inline(text.slice(line)));
                    loaded.names.push(i.to_string());
                }
                loaded
            }
            WasmInputs::Files(files) => {
                check_count(files.len())?;
                let mut names = std::collections::HashSet::new();
                let mut loaded = TaskInputs::default();
                for file in files {
                    check_name(&file.name)?;
                    if !names.insert(file.name.as_str()) {
                        return Err(InputError::DuplicateName(file.name.clone()));
                    }
                    let length = size(&file.blob).ok_or(InputError::Missing(file.blob))?;
                    if length > MAX_INPUT_FILE_BYTES {
                        return Err(InputError::TooLarge {
                            what: format!("input file {:?}", file.name),
                            bytes: length,
                            limit: MAX_INPUT_FILE_BYTES,
                        });
                    }
                    let input = if length > INLINE_INPUT_BYTES {
                        TaskInput::Blob {
                            blob: file.blob,
                            size: length,
                        }
                    } else {
                        TaskInput::Inline(fetch(&file.blob)?)
                    };
                    loaded.inputs.push(input);
                    loaded.names.push(file.name.clone());
                }
                loaded
            }
        };
        let count = loaded.len();
        match tasks {
            Some(tasks) if tasks != count => Err(InputError::Count {
                inputs: count,
                tasks,
            }),
            _ => Ok(loaded),
        }
    }

    pub fn len(&self) -> u32 {
        self.inputs.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Task `task`'s stdin (empty past the end), as a batch carries it.
    pub fn input(&self, task: u32) -> TaskInput {
        self.inputs.get(task as usize).cloned().unwrap_or_default()
    }

    /// Task `task`'s name: its line number (from 0), its file's name, or its
    /// index.
    pub fn name(&self, task: u32) -> String {
        self.names
            .get(task as usize)
            .cloned()
            .unwrap_or_else(|| task.to_string())
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The most tasks a batch of this job may carry, so that its inputs stay
    /// near [`BATCH_INPUT_BYTES`]; `None` when inputs do not matter.
    pub fn batch_cap(&self) -> Option<u32> {
        let largest = self
            .inputs
            .iter()
            .map(|input| match input {
                TaskInput::Inline(bytes) => bytes.len(),
                TaskInput::Blob { .. } => 0,
            })
            .max()
            .unwrap_or(0);
        (largest > 0).then(|| (BATCH_INPUT_BYTES / largest).max(1) as u32)
    }
}

fn check_count(count: usize) -> Result<(), InputError> {
    if count == 0 {
        return Err(InputError::Empty("the input has no lines or files"));
    }
    if count > MAX_TASKS as usize {
        return Err(InputError::TooMany {
            count: count as u64,
        });
    }
    Ok(())
}

/// A name becomes an output file's name: no paths, nothing hidden or odd,
/// and not the name of the index `grid results -o DIR` writes beside them.
fn check_name(name: &str) -> Result<(), InputError> {
    let plain = !name.is_empty()
        && name != "index.json"
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if plain {
        Ok(())
    } else {
        Err(InputError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::wasm::InputFile;
    use std::collections::HashMap;

    fn store(blobs: &[&[u8]]) -> HashMap<ContentDigest, Bytes> {
        blobs
            .iter()
            .map(|b| (ContentDigest::of(b), Bytes::copy_from_slice(b)))
            .collect()
    }

    fn load(
        inputs: &WasmInputs,
        tasks: Option<u32>,
        store: &HashMap<ContentDigest, Bytes>,
    ) -> Result<TaskInputs, InputError> {
        TaskInputs::load(
            inputs,
            tasks,
            |d| store.get(d).map(|b| b.len() as u64),
            |d| Ok(store.get(d).cloned()),
        )
    }

    fn inline(bytes: &[u8]) -> TaskInput {
        TaskInput::Inline(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn lines_become_tasks_named_by_line_number() {
        let text: &[u8] = b"3 4\n\n5 6";
        let blobs = store(&[text]);
        let inputs = load(&WasmInputs::Lines(ContentDigest::of(text)), None, &blobs).unwrap();
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs.input(0), inline(b"3 4"));
        assert_eq!(inputs.input(1), inline(b""));
        assert_eq!(inputs.input(2), inline(b"5 6"));
        assert_eq!(inputs.names(), ["0", "1", "2"]);
        assert_eq!(inputs.batch_cap(), Some((BATCH_INPUT_BYTES / 3) as u32));
        let wrong = load(&WasmInputs::Lines(ContentDigest::of(text)), Some(2), &blobs);
        assert_eq!(
            wrong,
            Err(InputError::Count {
                inputs: 3,
                tasks: 2
            })
        );
    }

    #[test]
    fn files_become_tasks_in_order_and_their_names_must_be_plain_and_unique() {
        let (a, b): (&[u8], &[u8]) = (b"alpha", b"");
        let blobs = store(&[a, b]);
        let file = |name: &str, bytes: &[u8]| InputFile {
            name: name.into(),
            blob: ContentDigest::of(bytes),
        };
        let inputs = load(
            &WasmInputs::Files(vec![file("z.txt", a), file("a.txt", b)]),
            Some(2),
            &blobs,
        )
        .unwrap();
        assert_eq!(inputs.names(), ["z.txt", "a.txt"]);
        assert_eq!((inputs.input(0), inputs.input(1)), (inline(a), inline(b)));
        for bad in ["", "../x", "a/b", ".hidden", "tab\there", "index.json"] {
            assert_eq!(
                load(&WasmInputs::Files(vec![file(bad, a)]), None, &blobs),
                Err(InputError::BadName(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            load(
                &WasmInputs::Files(vec![file("x", a), file("x", b)]),
                None,
                &blobs
            ),
            Err(InputError::DuplicateName("x".into()))
        );
    }

    #[test]
    fn missing_empty_and_oversized_inputs_are_refused_by_name() {
        let absent = ContentDigest::of(b"never uploaded");
        let err = load(&WasmInputs::Lines(absent), None, &HashMap::new()).unwrap_err();
        assert_eq!(err, InputError::Missing(absent));
        assert!(err.to_string().contains("PUT /api/blobs/sha256:"), "{err}");
        let blobs = store(&[b""]);
        assert!(matches!(
            load(&WasmInputs::Lines(ContentDigest::of(b"")), None, &blobs),
            Err(InputError::Empty(_))
        ));
        let mut long = vec![b'x'; MAX_TASK_INPUT_BYTES + 1];
        long.insert(0, b'\n');
        let blobs = store(&[&long]);
        assert_eq!(
            load(&WasmInputs::Lines(ContentDigest::of(&long)), None, &blobs),
            Err(InputError::TooLarge {
                what: "line 1 (counting from 0)".into(),
                bytes: MAX_TASK_INPUT_BYTES as u64 + 1,
                limit: MAX_TASK_INPUT_BYTES as u64,
            })
        );
        assert!(TaskInputs::empty(0).is_err());
        assert!(matches!(
            TaskInputs::empty(MAX_TASKS + 1),
            Err(InputError::TooMany { .. })
        ));
        let empty = TaskInputs::empty(3).unwrap();
        assert_eq!((empty.len(), empty.batch_cap()), (3, None));
        assert_eq!(empty.input(2), inline(b""));
    }

    #[test]
    fn large_input_files_travel_as_blobs_and_are_never_read() {
        let small = vec![b's'; INLINE_INPUT_BYTES as usize];
        let large = vec![b'l'; INLINE_INPUT_BYTES as usize + 1];
        let blobs = store(&[&small, &large]);
        let file = |name: &str, bytes: &[u8]| InputFile {
            name: name.into(),
            blob: ContentDigest::of(bytes),
        };
        let mut reads = Vec::new();
        let inputs = TaskInputs::load(
            &WasmInputs::Files(vec![file("small", &small), file("large", &large)]),
            None,
            |d| blobs.get(d).map(|b| b.len() as u64),
            |d| {
                reads.push(*d);
                Ok(blobs.get(d).cloned())
            },
        )
        .unwrap();
        assert_eq!(inputs.input(0), inline(&small));
        assert_eq!(
            inputs.input(1),
            TaskInput::Blob {
                blob: ContentDigest::of(&large),
                size: large.len() as u64
            }
        );
        assert_eq!(
            reads,
            [ContentDigest::of(&small)],
            "the large one is not read"
        );
        assert_eq!(
            inputs.batch_cap(),
            Some((BATCH_INPUT_BYTES / small.len()) as u32),
            "references weigh nothing in a batch"
        );
        let huge = TaskInputs::load(
            &WasmInputs::Files(vec![file("huge", b"x")]),
            None,
            |_| Some(MAX_INPUT_FILE_BYTES + 1),
            |_| unreachable!(),
        );
        assert!(matches!(huge, Err(InputError::TooLarge { .. })), "{huge:?}");
    }
}
