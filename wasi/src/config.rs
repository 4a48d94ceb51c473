//! What one run of a kernel is given ([`TaskConfig`]): its argv, its stdin,
//! the job's read-only files ([`DataFile`]), the seed of its random stream
//! and the job's limits; and how a task's seed is derived
//! ([`random_seed`]), so every replica of a task draws the same random
//! bytes and different tasks draw different ones.

use bytes::Bytes;
use grid_kernels::wasm::{MAX_FILES, WasmLimits, WasmParams, check_file_name};
use sha2::{Digest, Sha256};

/// The inputs of one run of a kernel on one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    /// argv, `argv[0]` (the program's name) first. No argument may hold a
    /// NUL byte: the kernel sees each as a C string.
    pub args: Vec<Vec<u8>>,
    /// Everything `fd_read` on fd 0 returns, then end of file.
    pub stdin: Vec<u8>,
    /// The key of the `random_get` stream, normally [`random_seed`]'s.
    pub seed: [u8; 32],
    /// The job's limits; this crate enforces `stdout_bytes` and
    /// `stderr_bytes` (the runtime enforces fuel and memory).
    pub limits: WasmLimits,
    /// The job's read-only files, seen under `/data`, sorted by name
    /// (`WasmParams::files`, with their bytes). Shared, never copied per task.
    pub files: Vec<DataFile>,
}

/// One read-only file of `/data`: its name there and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataFile {
    pub name: String,
    pub bytes: Bytes,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its length, not its bytes: a file may be gigabytes.
        f.debug_struct("DataFile")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a [`TaskConfig`] cannot be given to a kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("argument {index} holds a NUL byte, which would end it early in the kernel")]
    NulInArgument { index: usize },
    #[error("the arguments take {bytes} bytes as C strings, past what a 32-bit kernel can address")]
    ArgumentsTooLarge { bytes: u64 },
    #[error("the files of /data: {0}")]
    Files(String),
}

impl TaskConfig {
    /// Task `task` of a wasm job with `params`, reading `stdin`: the job's
    /// argv and limits, and the task's random seed. Every worker builds a
    /// task's run from here, so replicas are given the same.
    pub fn of_task(params: &WasmParams, task: u32, stdin: Vec<u8>) -> TaskConfig {
        TaskConfig {
            args: params.argv(),
            stdin,
            seed: random_seed(params.seed, &params.module.0, task),
            limits: params.limits(),
            files: Vec::new(),
        }
    }

    /// Whether a kernel can be given this argv and these files: no NUL
    /// inside an argument, and `args_sizes_get`'s two counts fit in a u32;
    /// the files as a job may mount them (`check_files`: at most
    /// `MAX_FILES`, valid names, sorted, each once). The argv pointers and
    /// strings must also fit in the kernel's memory; a kernel that cannot
    /// hold them gets `fault` from `args_get`, like any other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(index) = self.args.iter().position(|arg| arg.contains(&0)) {
            return Err(ConfigError::NulInArgument { index });
        }
        let bytes = args_buf_size(&self.args);
        if bytes > u64::from(u32::MAX) || self.args.len() > u32::MAX as usize {
            return Err(ConfigError::ArgumentsTooLarge { bytes });
        }
        check_files(&self.files)
    }
}

/// The checks of `grid_kernels::wasm::check_files`, on the files' names.
fn check_files(files: &[DataFile]) -> Result<(), ConfigError> {
    if files.len() > MAX_FILES {
        return Err(ConfigError::Files(format!(
            "at most {MAX_FILES} files, got {}",
            files.len()
        )));
    }
    for file in files {
        check_file_name(&file.name).map_err(ConfigError::Files)?;
    }
    if let Some(pair) = files.windows(2).find(|pair| pair[0].name >= pair[1].name) {
        return Err(ConfigError::Files(format!(
            "not sorted, or a name given twice: {:?} then {:?}",
            pair[0].name, pair[1].name
        )));
    }
    Ok(())
}

/// The bytes of argv's strings, each with its NUL.
pub(crate) fn args_buf_size(args: &[Vec<u8>]) -> u64 {
    args.iter().map(|arg| arg.len() as u64 + 1).sum()
}

/// What [`random_seed`] hashes before its inputs, so that no other hash in
/// browsergrid can collide with a task's seed.
pub const RANDOM_SEED_DOMAIN: &[u8] = b"browsergrid/wasi/random_get/v1";

/// The `random_get` seed of task `task` of a job: SHA-256 of
/// [`RANDOM_SEED_DOMAIN`], then `job_seed` as 8 little-endian bytes, then
/// the prepared module's SHA-256 (32 bytes), then `task` as 4 little-endian
/// bytes. Every field but the first has a fixed width, so no two inputs
/// give the same hashed bytes.
pub fn random_seed(job_seed: u64, module_sha256: &[u8; 32], task: u32) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(RANDOM_SEED_DOMAIN);
    hash.update(job_seed.to_le_bytes());
    hash.update(module_sha256);
    hash.update(task.to_le_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&[u8]]) -> TaskConfig {
        TaskConfig {
            files: Vec::new(),
            args: args.iter().map(|a| a.to_vec()).collect(),
            stdin: Vec::new(),
            seed: [0; 32],
            limits: WasmLimits::DEFAULT,
        }
    }

    #[test]
    fn arguments_with_a_nul_are_refused() {
        assert_eq!(config(&[b"kernel", b"--n=3"]).validate(), Ok(()));
        assert_eq!(config(&[]).validate(), Ok(()));
        assert_eq!(config(&[b""]).validate(), Ok(()));
        assert_eq!(
            config(&[b"kernel", b"a\0b"]).validate(),
            Err(ConfigError::NulInArgument { index: 1 })
        );
        assert_eq!(args_buf_size(&config(&[b"ab", b""]).args), 4);
    }

    #[test]
    fn files_must_be_as_a_job_mounts_them() {
        let file = |name: &str| DataFile {
            name: name.to_string(),
            bytes: Bytes::from_static(b"x"),
        };
        let with = |names: &[&str]| TaskConfig {
            files: names.iter().map(|n| file(n)).collect(),
            ..config(&[b"k"])
        };
        assert_eq!(with(&["a", "b", "c.txt"]).validate(), Ok(()));
        for bad in [
            &["b", "a"][..],
            &["a", "a"],
            &["."],
            &[".."],
            &[""],
            &["a/b"],
            &["a\n"],
            &["\n"],
        ] {
            assert!(
                matches!(with(bad).validate(), Err(ConfigError::Files(_))),
                "{bad:?}"
            );
        }
        let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("{i:03}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(with(&names[..MAX_FILES]).validate(), Ok(()));
        assert!(with(&names).validate().is_err());
    }

    #[test]
    fn the_seed_is_the_documented_hash() {
        let module = [0xab; 32];
        // Computed independently, with the shell:
        // { printf 'browsergrid/wasi/random_get/v1'; printf '\x07\0\0\0\0\0\0\0';
        //   python3 -c "import sys; sys.stdout.buffer.write(b'\xab'*32)";
        //   printf '\x02\0\0\0'; } | sha256sum
        let expected = "136e40ec4906be59924b8d440a2f88230906ce68c70adcd54a396b64a399c011";
        let seed = random_seed(7, &module, 2);
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn every_input_changes_the_seed() {
        let module = [1; 32];
        let base = random_seed(1, &module, 0);
        assert_eq!(base, random_seed(1, &module, 0));
        assert_ne!(base, random_seed(2, &module, 0));
        assert_ne!(base, random_seed(1, &[2; 32], 0));
        assert_ne!(base, random_seed(1, &module, 1));
    }
}
