//! slicehash: reads one line `NAME OFFSET LEN` from stdin, opens the job's
//! file `/data/NAME` with `std::fs`, seeks to OFFSET, reads LEN bytes (fewer
//! if the file ends first) and prints the lowercase hex SHA-256 of what it
//! read, then a newline.
//!
//! Exit codes: 0 done, 2 a bad input line, 3 the file cannot be opened,
//! seeked or read (the reason on stderr). Reading past the end is not an
//! error: the slice is whatever the file holds from OFFSET on, possibly
//! nothing.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

use sha2::{Digest, Sha256};

/// What one task asks for.
#[derive(Debug, PartialEq, Eq)]
struct Slice {
    name: String,
    offset: u64,
    len: u64,
}

/// `NAME OFFSET LEN`, separated by spaces or tabs, with an optional newline.
fn parse(line: &str) -> Result<Slice, String> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [name, offset, len] = fields[..] else {
        return Err(format!(
            "expected `NAME OFFSET LEN`, got {} fields",
            fields.len()
        ));
    };
    let number = |what: &str, text: &str| {
        text.parse::<u64>()
            .map_err(|e| format!("{what} {text:?}: {e}"))
    };
    Ok(Slice {
        name: name.to_string(),
        offset: number("offset", offset)?,
        len: number("length", len)?,
    })
}

/// The SHA-256 of up to `len` bytes of `reader`, in lowercase hex.
fn hash_prefix(reader: impl Read, len: u64) -> io::Result<String> {
    let mut hash = Sha256::new();
    let mut limited = reader.take(len);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

fn run(slice: &Slice) -> io::Result<String> {
    let path = format!("/data/{}", slice.name);
    let mut file = File::open(&path)?;
    file.seek(SeekFrom::Start(slice.offset))?;
    hash_prefix(file, slice.len)
}

fn main() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = io::stdin().read_line(&mut line) {
        eprintln!("slicehash: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    let slice = match parse(&line) {
        Ok(slice) => slice,
        Err(e) => {
            eprintln!("slicehash: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&slice) {
        Ok(hex) => {
            println!("{hex}");
            io::stdout()
                .flush()
                .map_or(ExitCode::from(3), |()| ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("slicehash: /data/{}: {e}", slice.name);
            ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_three_fields() {
        assert_eq!(
            parse("data.bin 5 10\n"),
            Ok(Slice {
                name: "data.bin".into(),
                offset: 5,
                len: 10
            })
        );
        assert_eq!(parse(" a\t0  0 ").map(|s| s.len), Ok(0));
        assert!(parse("a 1").is_err());
        assert!(parse("a 1 2 3").is_err());
        assert!(parse("a -1 2").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn the_digest_is_sha256_of_the_prefix() {
        // `printf abc | sha256sum`, and of nothing.
        assert_eq!(
            hash_prefix(&b"abcdef"[..], 3).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_prefix(&b"ab"[..], 0).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Asking past the end hashes what there is.
        assert_eq!(
            hash_prefix(&b"abc"[..], 1 << 40).unwrap(),
            hash_prefix(&b"abc"[..], 3).unwrap()
        );
    }
}
