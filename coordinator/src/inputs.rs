//! A wasm job's tasks as the coordinator hands them out: each task's stdin
//! and its name, split once from the job's input blobs (at submission, and
//! again when a restarted coordinator resumes the job) and then sent inline
//! in batches. The blobs are read through a function, so the rules here
//! (how lines and files become tasks, what is too large) are tested without
//! a disk.

use bytes::Bytes;
use grid_kernels::ContentDigest;
use grid_kernels::wasm::{WasmInputs, split_lines};

/// The most bytes of stdin one task may have: a batch carries its tasks'
/// inputs inline, and a worker must be able to hold a batch.
pub const MAX_TASK_INPUT_BYTES: usize = 1 << 20;
/// The most tasks a wasm job may have.
pub const MAX_TASKS: u32 = 1_000_000;
/// The most input bytes one batch should carry; batches of a job with large
/// inputs are capped at fewer tasks to stay under it.
pub const BATCH_INPUT_BYTES: usize = 4 << 20;

/// Each task's stdin and name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskInputs {
    inputs: Vec<Bytes>,
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
    #[error("{what} is {bytes} bytes; a task's input may be at most {MAX_TASK_INPUT_BYTES} bytes")]
    TooLarge { what: String, bytes: usize },
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
            inputs: vec![Bytes::new(); tasks as usize],
            names: (0..tasks).map(|t| t.to_string()).collect(),
        })
    }

    /// Splits `inputs` into tasks, reading each blob with `read` (which says
    /// `Ok(None)` for a blob the store lacks). `tasks`, if given, must agree.
    pub fn load(
        inputs: &WasmInputs,
        tasks: Option<u32>,
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
                            bytes: line.len(),
                        });
                    }
                    loaded.inputs.push(text.slice(line));
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
                    let bytes = fetch(&file.blob)?;
                    if bytes.len() > MAX_TASK_INPUT_BYTES {
                        return Err(InputError::TooLarge {
                            what: format!("input file {:?}", file.name),
                            bytes: bytes.len(),
                        });
                    }
                    loaded.inputs.push(bytes);
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

    /// Task `task`'s stdin (empty past the end).
    pub fn input(&self, task: u32) -> Bytes {
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
        let largest = self.inputs.iter().map(Bytes::len).max().unwrap_or(0);
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
        TaskInputs::load(inputs, tasks, |d| Ok(store.get(d).cloned()))
    }

    #[test]
    fn lines_become_tasks_named_by_line_number() {
        let text: &[u8] = b"3 4\n\n5 6";
        let blobs = store(&[text]);
        let inputs = load(&WasmInputs::Lines(ContentDigest::of(text)), None, &blobs).unwrap();
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs.input(0), &b"3 4"[..]);
        assert_eq!(inputs.input(1), &b""[..]);
        assert_eq!(inputs.input(2), &b"5 6"[..]);
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
        assert_eq!(
            (inputs.input(0), inputs.input(1)),
            (Bytes::from(a), Bytes::new())
        );
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
                bytes: MAX_TASK_INPUT_BYTES + 1
            })
        );
        assert!(TaskInputs::empty(0).is_err());
        assert!(matches!(
            TaskInputs::empty(MAX_TASKS + 1),
            Err(InputError::TooMany { .. })
        ));
        let empty = TaskInputs::empty(3).unwrap();
        assert_eq!((empty.len(), empty.batch_cap()), (3, None));
        assert_eq!(empty.input(2), Bytes::new());
    }
}
