//! A full disk, for real: a small tmpfs mounted for a test (the tests run
//! as root, as CI does), unmounted when dropped.

use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of a given size, unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    _parent: tempfile::TempDir,
    pub root: PathBuf,
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("disk");
        std::fs::create_dir(&root).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&root)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs failed: this test needs root, as CI has"
        );
        SmallDisk {
            _parent: parent,
            root,
        }
    }

    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.root)
            .status()
            .unwrap();
        assert!(status.success(), "remounting at {size} failed");
    }

    /// Fills what is left with a file, and returns its path.
    pub fn fill(&self) -> PathBuf {
        let filler = self.root.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0xa5u8; 4096];
        use std::io::Write;
        while file.write_all(&block).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}
