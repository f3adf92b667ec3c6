//! Writing a tree of untrusted names under one folder without ever leaving it.
//!
//! Everything is created relative to an open directory handle (`openat` and friends), each
//! new entry exclusively (`O_EXCL`, so a name listed twice is an error rather than a write
//! through whatever the first one made), and no path component is followed if it is a
//! symlink (`O_NOFOLLOW` on every step). A symlink written here is therefore only ever data:
//! nothing this module does afterwards goes through it.
//!
//! Both the UnixFS exporter and the tar unpacker of `storage` write through it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Modes of what is written: content from elsewhere never gets setuid, setgid or sticky bits.
pub const FILE_MODE: u32 = 0o644;
/// Executable files keep `x` for everyone who may read them, and nothing more.
pub const EXEC_MODE: u32 = 0o755;
/// Folders.
pub const DIR_MODE: u32 = 0o755;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Refuses a name that is not one plain path component.
pub fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(invalid(format!("{name:?} cannot be a file name")));
    }
    Ok(())
}

/// An open folder that entries are created in.
#[derive(Debug)]
pub struct DirHandle(OwnedFd);

impl DirHandle {
    /// Makes `dest` as a new folder (or takes it if it is an empty folder, not a symlink) and
    /// opens it. Its parent must exist; it is the caller's own path, so it may be anything.
    pub fn create_root(dest: &Path) -> io::Result<Self> {
        let (parent, name) = split(dest)?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(with_path(e.into(), dest)),
        }
        let fd = rustix::fs::openat(&parent, name, dir_flags(), Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists and is not a folder", dest.display()))
            } else {
                with_path(e.into(), dest)
            }
        })?;
        let root = Self(fd);
        if !root.is_empty()? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists and is not empty; choose an empty or new folder", dest.display()),
            ));
        }
        Ok(root)
    }

    fn is_empty(&self) -> io::Result<bool> {
        let dup = rustix::fs::openat(&self.0, ".", dir_flags(), Mode::empty())?;
        let mut dir = rustix::fs::Dir::read_from(&dup)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Creates the folder `name` in this one and opens it.
    pub fn create_dir(&self, name: &str) -> io::Result<DirHandle> {
        check_name(name)?;
        rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(DIR_MODE)).map_err(|e| exists(e, name))?;
        Ok(DirHandle(rustix::fs::openat(&self.0, name, dir_flags(), Mode::empty())?))
    }

    /// Opens the folder `name` in this one, creating it when it is missing; a symlink or a
    /// file by that name is refused.
    pub fn open_or_create_dir(&self, name: &str) -> io::Result<DirHandle> {
        check_name(name)?;
        match rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::openat(&self.0, name, dir_flags(), Mode::empty()).map(DirHandle).map_err(|e| {
            if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                invalid(format!("{name:?} is already something other than a folder"))
            } else {
                e.into()
            }
        })
    }

    /// Creates the file `name` in this one, which must not exist yet.
    pub fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        check_name(name)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(&self.0, name, flags, Mode::from_raw_mode(mode & 0o777)).map_err(|e| exists(e, name))?;
        // The umask may have taken bits away; it never adds any.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777))?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `name` → `target` in this one. The target is stored as given and
    /// never followed here.
    pub fn create_symlink(&self, name: &str, target: &[u8]) -> io::Result<()> {
        check_name(name)?;
        if target.is_empty() || target.contains(&0) {
            return Err(invalid(format!("the symlink {name:?} has an empty target or one with a NUL byte")));
        }
        rustix::fs::symlinkat(OsStr::from_bytes(target), &self.0, name).map_err(|e| exists(e, name))
    }
}

impl AsFd for DirHandle {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn exists(e: rustix::io::Errno, name: &str) -> io::Error {
    if e == rustix::io::Errno::EXIST {
        invalid(format!("the name {name:?} appears twice in one folder; refusing the content"))
    } else {
        e.into()
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The parent (opened, following the caller's own path) and the last name of `dest`.
fn split(dest: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let name =
        dest.file_name().ok_or_else(|| invalid(format!("{} does not end in a name to create", dest.display())))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| with_path(e.into(), parent))?;
    Ok((fd, name))
}

/// Creates the file `dest` (which must not exist; its last component is never followed).
pub fn create_new_file(dest: &Path) -> io::Result<File> {
    let (parent, name) = split(dest)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(FILE_MODE))
        .map_err(|e| with_path(e.into(), dest))?;
    Ok(File::from(fd))
}

/// Creates the symlink `dest` → `target` (`dest` must not exist).
pub fn create_new_symlink(dest: &Path, target: &[u8]) -> io::Result<()> {
    let (parent, name) = split(dest)?;
    if target.is_empty() || target.contains(&0) {
        return Err(invalid(format!("the symlink {} has an empty target or one with a NUL byte", dest.display())));
    }
    rustix::fs::symlinkat(OsStr::from_bytes(target), &parent, name).map_err(|e| with_path(e.into(), dest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_name_is_created_once_and_symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let root = DirHandle::create_root(&tmp.path().join("root")).expect("root");
        root.create_symlink("esc", outside.as_os_str().as_bytes()).expect("symlink");
        // Neither a file nor a folder can be made through the symlink's name.
        assert!(root.create_file("esc", FILE_MODE).is_err());
        assert!(root.create_dir("esc").is_err());
        assert!(root.open_or_create_dir("esc").is_err());
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
        let mut f = root.create_file("a", 0o4755).expect("file");
        f.write_all(b"x").expect("write");
        let err = root.create_file("a", FILE_MODE).expect_err("twice");
        assert!(err.to_string().contains("appears twice"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("root/a")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7000, 0, "setuid must be dropped: {mode:o}");
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(root.create_dir(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_root_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(tmp.path().join("full")).expect("mkdir");
        std::fs::write(tmp.path().join("full/x"), "x").expect("w");
        assert!(DirHandle::create_root(&tmp.path().join("full")).is_err());
        std::fs::create_dir(tmp.path().join("empty")).expect("mkdir");
        DirHandle::create_root(&tmp.path().join("empty")).expect("empty is fine");
        std::os::unix::fs::symlink(tmp.path().join("empty"), tmp.path().join("link")).expect("ln");
        assert!(DirHandle::create_root(&tmp.path().join("link")).is_err(), "a symlinked root is refused");
    }
}
