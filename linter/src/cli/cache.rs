//! `lint --context`'s cache of parsed context files, so a pre-commit run over an unchanged
//! repository parses (and reads) only the files that changed.
//!
//! One pack file per set of context inputs, in the user's cache directory
//! ([`cache_dir`]). It holds, for each file of the last run's context, the file's parse
//! ([`ParsedFile`], as JSON) addressed by the SHA-256 of the file's bytes, and the file's
//! metadata when it was read (device, inode, size, modification and change times):
//!
//! - a file whose metadata is unchanged is not read at all: its parse comes from the pack (the
//!   check git's index makes; a file modified within [`RACY`] of the pack being written is never
//!   trusted by metadata, since a second change in the same clock tick would keep its times);
//! - any other file is read and hashed; when its bytes are in the pack (a `touch`, a checkout
//!   that rewrote it, a renamed copy) the parse is reused, otherwise it is parsed;
//! - a file's text, when not read, is read only if a finding must be located in it, and used
//!   only if its hash is still the one parsed.
//!
//! The pack is replaced whole (written beside it, then renamed over it), so concurrent runs
//! each see one complete pack and the last to finish wins. It is checked before use: a pack
//! from another build of portcullis (the key includes the binary's size and modification
//! time), a truncated or corrupt one (its blob's SHA-256 is in its header), or an entry that
//! does not deserialize is a miss, never an error. The cache cannot change a result: the
//! tests compare cold, warm and uncached runs.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ring::digest::{SHA256, digest};

use crate::project::ParsedFile;

/// Bumped whenever the pack layout or what a [`ParsedFile`] means changes.
const FORMAT: u32 = 1;
/// The first line of every pack.
const MAGIC: &str = "portcullis context cache";
/// A pack larger than this is not read (and not written): the cache is an optimisation, and
/// must not cost more memory than the run it saves.
const MAX_PACK_BYTES: u64 = 512 * 1024 * 1024;
/// Packs kept in the directory (one per set of context inputs); the least recently written go.
const MAX_PACKS: usize = 16;
/// Files modified less than this before a pack is written are recorded without metadata, so
/// the next run reads and hashes them (see the module documentation).
const RACY: Duration = Duration::from_secs(2);

/// The directory the cache lives in: `$PORTCULLIS_CACHE_DIR`, else `$XDG_CACHE_HOME/portcullis`,
/// else `~/.cache/portcullis`; `None` when none is known.
pub fn cache_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("PORTCULLIS_CACHE_DIR")
        .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("portcullis")))
        .or_else(|| set("HOME").map(|d| d.join(".cache").join("portcullis")))
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    /// `None` where the platform does not give all of it (then files are always hashed).
    pub fn of(meta: &std::fs::Metadata) -> Option<Stat> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(Stat {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    /// Whether the file was last modified (or had its metadata changed) at least [`RACY`]
    /// before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        let latest = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(latest.0) else { return false };
        let Ok(nanos) = u32::try_from(latest.1) else { return false };
        Duration::new(secs, nanos.min(999_999_999)).saturating_add(RACY) < now
    }
}

/// The hex SHA-256 of a file's bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    digest(&SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The header line of a pack.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Index {
    key: String,
    blob_len: usize,
    blob_sha256: String,
    files: Vec<IndexEntry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct IndexEntry {
    path: PathBuf,
    /// `None`: not trusted by metadata (modified too recently when written).
    stat: Option<Stat>,
    sha256: String,
    /// A `portcullis fix` output file (its objects supersede others).
    superseding: bool,
    offset: usize,
    len: usize,
}

/// A file of this run's context, as the cache will remember it.
#[derive(Debug)]
pub struct Remembered {
    pub path: PathBuf,
    pub stat: Option<Stat>,
    pub sha256: String,
    pub superseding: bool,
    /// The serialized parse: an entry of the old pack, or new.
    pub entry: Entry,
}

/// Where a remembered parse's bytes are.
#[derive(Debug)]
pub enum Entry {
    Old { offset: usize, len: usize },
    New(Vec<u8>),
}

/// A file's parse found in the pack.
#[derive(Debug, Clone)]
pub struct Hit {
    pub sha256: String,
    pub superseding: bool,
    offset: usize,
    len: usize,
}

impl Hit {
    pub fn entry(&self) -> Entry {
        Entry::Old { offset: self.offset, len: self.len }
    }
}

/// The pack of one set of context inputs, as read at the start of a run.
#[derive(Debug)]
pub struct ContextCache {
    dir: PathBuf,
    file: PathBuf,
    key: String,
    /// By path as bytes (`Path`'s own hash walks its components: several times slower).
    by_path: HashMap<std::ffi::OsString, IndexEntry>,
    by_hash: HashMap<String, (usize, usize)>,
    /// The pack as read, and where its blob starts in it.
    pack: Vec<u8>,
    blob_start: usize,
}

impl ContextCache {
    /// Opens (or starts) the pack for `context` (the inputs as given, made absolute against
    /// `cwd`) in `dir`. `keep_values` is part of the key: parses differ with it.
    pub fn open(dir: &Path, cwd: &Path, context: &[String], keep_values: bool) -> ContextCache {
        let mut key = format!("{MAGIC} {FORMAT} {} {}", env!("CARGO_PKG_VERSION"), binary_identity());
        key.push_str(if keep_values { " values" } else { " typed" });
        key.push_str(&format!(" cwd={}", cwd.display()));
        for input in context {
            key.push_str(&format!(" context={}", cwd.join(input).display()));
        }
        let name = format!("context-{}.pack", &content_hash(key.as_bytes())[..24]);
        let mut cache = ContextCache {
            dir: dir.to_path_buf(),
            file: dir.join(name),
            key,
            by_path: HashMap::new(),
            by_hash: HashMap::new(),
            pack: Vec::new(),
            blob_start: 0,
        };
        if let Some((index, pack, blob_start)) = read_pack(&cache.file, &cache.key) {
            for entry in index.files {
                cache.by_hash.insert(entry.sha256.clone(), (entry.offset, entry.len));
                cache.by_path.insert(entry.path.clone().into_os_string(), entry);
            }
            cache.pack = pack;
            cache.blob_start = blob_start;
        }
        cache
    }

    fn blob(&self) -> &[u8] {
        self.pack.get(self.blob_start..).unwrap_or_default()
    }

    /// The parse of the file at `absolute` when its metadata is what the pack recorded.
    pub fn by_stat(&self, absolute: &Path, stat: Option<Stat>) -> Option<Hit> {
        let entry = self.by_path.get(absolute.as_os_str())?;
        (entry.stat.is_some() && entry.stat == stat).then(|| Hit {
            sha256: entry.sha256.clone(),
            superseding: entry.superseding,
            offset: entry.offset,
            len: entry.len,
        })
    }

    /// The parse of a file with these bytes (hash), read from any path.
    pub fn by_content(&self, sha256: &str, superseding: bool) -> Option<Hit> {
        let &(offset, len) = self.by_hash.get(sha256)?;
        Some(Hit { sha256: sha256.to_owned(), superseding, offset, len })
    }

    /// Deserializes a hit; `None` (a miss) when the entry is damaged or was parsed for the
    /// other kind of inventory.
    pub fn parsed(&self, hit: &Hit, keep_values: bool) -> Option<ParsedFile> {
        let bytes = self.blob().get(hit.offset..hit.offset.checked_add(hit.len)?)?;
        serde_json::from_slice::<ParsedFile>(bytes).ok().filter(|p| p.keeps_values() == keep_values)
    }

    /// Whether `files` is what the pack already holds (then it is not rewritten).
    fn unchanged(&self, files: &[Remembered]) -> bool {
        files.len() == self.by_path.len()
            && files.iter().all(|f| {
                matches!(f.entry, Entry::Old { .. })
                    && self
                        .by_path
                        .get(f.path.as_os_str())
                        .is_some_and(|old| old.stat == f.stat && old.sha256 == f.sha256)
            })
    }

    /// Replaces the pack with `files` (this run's context). Failures are ignored: the cache
    /// only saves time.
    pub fn store(&self, files: Vec<Remembered>, now: SystemTime) {
        if self.unchanged(&files) {
            return;
        }
        let mut blob = Vec::new();
        let mut offsets: HashMap<String, (usize, usize)> = HashMap::new();
        let mut index = Index { key: self.key.clone(), blob_len: 0, blob_sha256: String::new(), files: Vec::new() };
        for file in files {
            let (offset, len) = match offsets.get(&file.sha256) {
                Some(&at) => at,
                None => {
                    let bytes = match &file.entry {
                        Entry::Old { offset, len } => {
                            let Some(bytes) = self.blob().get(*offset..offset.saturating_add(*len)) else { continue };
                            bytes
                        }
                        Entry::New(bytes) => bytes.as_slice(),
                    };
                    let at = (blob.len(), bytes.len());
                    blob.extend_from_slice(bytes);
                    offsets.insert(file.sha256.clone(), at);
                    at
                }
            };
            let stat = file.stat.filter(|s| s.settled(now));
            index.files.push(IndexEntry {
                path: file.path,
                stat,
                sha256: file.sha256,
                superseding: file.superseding,
                offset,
                len,
            });
        }
        if blob.len() as u64 > MAX_PACK_BYTES {
            return;
        }
        index.blob_len = blob.len();
        index.blob_sha256 = content_hash(&blob);
        let Ok(header) = serde_json::to_vec(&index) else { return };
        let _ = write_pack(&self.dir, &self.file, &header, &blob, now);
    }
}

/// What distinguishes this build of portcullis from another of the same version: its
/// executable's size and modification time (a rebuilt binary must not trust the old one's
/// parses).
fn binary_identity() -> String {
    let meta = std::env::current_exe().and_then(std::fs::metadata);
    match meta {
        Ok(meta) => {
            let modified = meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
            format!("exe={}:{}", meta.len(), modified.map_or(0, |d| d.as_nanos()))
        }
        Err(_) => "exe=unknown".to_owned(),
    }
}

/// The index of a pack and the pack, with where its blob starts, when it exists, is for `key`
/// and is whole.
fn read_pack(file: &Path, key: &str) -> Option<(Index, Vec<u8>, usize)> {
    let handle = std::fs::File::open(file).ok()?;
    let mut bytes = Vec::new();
    handle.take(MAX_PACK_BYTES.saturating_add(1)).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_PACK_BYTES {
        return None;
    }
    let rest = bytes.strip_prefix(MAGIC.as_bytes())?.strip_prefix(b"\n")?;
    let newline = memchr::memchr(b'\n', rest)?;
    let index: Index = serde_json::from_slice(&rest[..newline]).ok()?;
    let blob = rest.get(newline + 1..)?;
    if index.key != key || index.blob_len != blob.len() || index.blob_sha256 != content_hash(blob) {
        return None;
    }
    let blob_start = bytes.len() - blob.len();
    Some((index, bytes, blob_start))
}

/// Writes a pack beside its final name, then renames it over: readers see the old pack or the
/// new one, whole. Then drops the oldest packs beyond [`MAX_PACKS`].
fn write_pack(dir: &Path, file: &Path, header: &[u8], blob: &[u8], now: SystemTime) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".pack-{}-{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        use std::io::Write;
        out.write_all(MAGIC.as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(header)?;
        out.write_all(b"\n")?;
        out.write_all(blob)?;
        out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
        std::fs::rename(&temp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    prune(dir);
    Ok(())
}

/// The cache directory, readable by its owner only (parses of private manifests are in it).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Keeps the [`MAX_PACKS`] most recently written packs.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut packs: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("context-") && n.ends_with(".pack")))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if packs.len() <= MAX_PACKS {
        return;
    }
    packs.sort();
    for (_, path) in &packs[..packs.len() - MAX_PACKS] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_follows_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| std::ffi::OsString::from(v))
        };
        assert_eq!(cache_dir(env(&[("PORTCULLIS_CACHE_DIR", "/c"), ("HOME", "/h")])), Some(PathBuf::from("/c")));
        assert_eq!(cache_dir(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])), Some(PathBuf::from("/x/portcullis")));
        assert_eq!(
            cache_dir(env(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/portcullis"))
        );
        assert_eq!(cache_dir(env(&[])), None);
    }

    #[test]
    fn a_recent_change_is_not_trusted_by_metadata() {
        let stat = |secs| Stat { dev: 1, ino: 2, size: 3, mtime: (secs, 0), ctime: (secs, 0) };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(stat(990).settled(now));
        assert!(!stat(999).settled(now));
        assert!(!stat(2_000).settled(now), "a time in the future");
        assert!(!stat(-5).settled(SystemTime::UNIX_EPOCH), "negative times do not panic");
    }

    #[test]
    fn a_damaged_pack_is_a_miss() {
        let dir = std::env::temp_dir().join(format!("portcullis-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cwd = Path::new("/repo");
        let cache = ContextCache::open(&dir, cwd, &[".".to_owned()], false);
        let parsed = ParsedFile::parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", false);
        let entry = serde_json::to_vec(&parsed).unwrap();
        let now = SystemTime::now();
        let stat = Stat { dev: 1, ino: 2, size: 3, mtime: (0, 0), ctime: (0, 0) };
        let path = PathBuf::from("/repo/a.yaml");
        cache.store(
            vec![Remembered {
                path: path.clone(),
                stat: Some(stat),
                sha256: "abc".into(),
                superseding: false,
                entry: Entry::New(entry),
            }],
            now,
        );
        let warm = ContextCache::open(&dir, cwd, &[".".to_owned()], false);
        let hit = warm.by_stat(&path, Some(stat)).expect("stored");
        assert!(warm.parsed(&hit, false).is_some());
        assert!(warm.parsed(&hit, true).is_none(), "parsed for the other kind of inventory");
        assert!(warm.by_stat(&path, Some(Stat { size: 4, ..stat })).is_none(), "the file changed");
        assert!(warm.by_content("abc", false).is_some());
        // Another set of context inputs has its own pack.
        assert!(ContextCache::open(&dir, cwd, &["other".to_owned()], false).by_stat(&path, Some(stat)).is_none());
        // One flipped byte in the blob and the whole pack is ignored.
        let file =
            std::fs::read_dir(&dir).unwrap().flatten().find(|e| e.path().extension().is_some_and(|x| x == "pack"));
        let file = file.unwrap().path();
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(ContextCache::open(&dir, cwd, &[".".to_owned()], false).by_stat(&path, Some(stat)).is_none());
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert!(ContextCache::open(&dir, cwd, &[".".to_owned()], false).by_stat(&path, Some(stat)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
