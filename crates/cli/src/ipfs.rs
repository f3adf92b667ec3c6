//! `bacalhau ipfs ...`: the embedded store, shaped like kubo's CLI. Reads go through the local
//! store (the data dir's, the same one a local `serve` uses) and fall back to the node's
//! gateway block by block, verifying each; writes go to the local store and then to the node.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bacalhau_api::Client;
use bacalhau_ipfs::{BlockSource, BlockStore, CODEC_RAW, Cid, ImportOptions, Importer, dagpb};

use crate::args::{
    IpfsAddArgs, IpfsCatArgs, IpfsCommand, IpfsDagCommand, IpfsDagExportArgs, IpfsDagImportArgs, IpfsGetArgs,
    IpfsPinCommand, IpfsRepoCommand,
};

/// The local store: `<data dir>/ipfs`, the same one `serve` uses.
fn local_store(data_dir: &Path) -> Result<Arc<BlockStore>> {
    let dir = data_dir.join("ipfs");
    let store = BlockStore::open(&dir).with_context(|| format!("cannot open the IPFS store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Runs an `ipfs` command.
pub async fn run(client: &Client, data_dir: &Path, cmd: IpfsCommand) -> Result<()> {
    match cmd {
        IpfsCommand::Add(a) => add(client, data_dir, a).await,
        IpfsCommand::Get(a) => get(client, data_dir, &a).await,
        IpfsCommand::Cat(a) => cat(client, data_dir, &a).await,
        IpfsCommand::Ls(a) => ls(client, data_dir, &a).await,
        IpfsCommand::Dag(IpfsDagCommand::Export(a)) => dag_export(client, data_dir, a).await,
        IpfsCommand::Dag(IpfsDagCommand::Import(a)) => dag_import(client, data_dir, &a).await,
        IpfsCommand::Pin(IpfsPinCommand::Add(a)) => {
            let (cid, path) = parse_target(&a.cid)?;
            if !path.is_empty() {
                bail!("pin a CID, not a path inside one: resolve it with `bacalhau ipfs ls`");
            }
            client.pin(&cid.to_string(), "pinned by bacalhau ipfs pin add").await?;
            println!("pinned {cid} recursively");
            Ok(())
        }
        IpfsCommand::Pin(IpfsPinCommand::Rm(a)) => {
            let (cid, _) = parse_target(&a.cid)?;
            client.unpin(&cid.to_string()).await?;
            println!("unpinned {cid}");
            Ok(())
        }
        IpfsCommand::Pin(IpfsPinCommand::Ls(mut o)) => {
            // A cut CID is useless.
            o.wide = true;
            let pins = client.pins().await?;
            let rows = pins.iter().map(|p| vec![p.cid.clone(), "recursive".into(), p.labels.join("; ")]).collect();
            crate::output::print_list(&o, &["CID", "TYPE", "WHY"], rows, &pins)
        }
        IpfsCommand::Id => {
            let id = client.ipfs_id().await?;
            println!("{}", serde_json::to_string_pretty(&id)?);
            Ok(())
        }
        IpfsCommand::Repo(IpfsRepoCommand::Gc) => {
            let r = client.gc().await?;
            println!("removed {} blocks ({} bytes); {} pinned blocks kept", r.removed, r.removed_bytes, r.kept);
            Ok(())
        }
    }
}

/// `CID`, `CID/path` or `/ipfs/CID/path` → the CID and the path inside it.
fn parse_target(s: &str) -> Result<(Cid, String)> {
    let s = s.trim().trim_start_matches("/ipfs/").trim_start_matches("ipfs://");
    let (cid, path) = s.split_once('/').unwrap_or((s, ""));
    let cid = Cid::parse(cid).with_context(|| format!("{s:?} does not start with a CID"))?;
    Ok((cid, path.trim_matches('/').to_owned()))
}

fn import_options(a: &IpfsAddArgs) -> ImportOptions {
    let base = match a.profile.as_deref() {
        Some("unixfs-v1-2025") => ImportOptions::unixfs_v1_2025(),
        Some("kubo-0.39") => ImportOptions::v0().legacy_sharding(),
        _ if a.cid_version == 1 => ImportOptions::v1(),
        _ => ImportOptions::v0(),
    };
    ImportOptions { raw_leaves: a.raw_leaves.unwrap_or(base.raw_leaves), hidden: a.hidden, ..base }
}

fn total_size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| total_size(&e.path())).sum()
        }
        Ok(m) if m.is_file() => m.len(),
        _ => 0,
    }
}

const ADD_LABEL: &str = "added by bacalhau ipfs add";

async fn add(client: &Client, data_dir: &Path, a: IpfsAddArgs) -> Result<()> {
    let meta = std::fs::symlink_metadata(&a.path).with_context(|| format!("cannot read {}", a.path.display()))?;
    if meta.is_dir() && !a.recursive {
        bail!("{} is a folder: add it with -r", a.path.display());
    }
    let store = local_store(data_dir)?;
    let opts = import_options(&a);
    let st = store.clone();
    let root = tokio::task::spawn_blocking(move || -> Result<Cid> {
        let _guard = st.writer()?;
        let total = total_size(&a.path);
        let bar = if a.quieter || a.quiet || a.no_progress {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bytes:>10} / {total_bytes} [{wide_bar}] {bytes_per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let base = a.path.file_name().map_or_else(|| a.path.clone(), PathBuf::from);
        let mut out = io::stdout().lock();
        let mut lines = Ok(());
        let root = Importer::new(opts, |c, d| {
            if c.codec() == CODEC_RAW || d.len() > 1024 {
                bar.inc(d.len() as u64);
            }
            st.put_bytes(c, d)
        })
        .path_each(&a.path, &mut |p, item| {
            let rel = match p.strip_prefix(&a.path) {
                Ok(r) if !r.as_os_str().is_empty() => base.join(r),
                _ => base.clone(),
            };
            let line = if a.quieter {
                return;
            } else if a.quiet {
                format!("{}", item.cid)
            } else {
                format!("added {} {}", item.cid, rel.display())
            };
            if lines.is_ok() {
                lines = bar.suspend(|| writeln!(out, "{line}"));
            }
        })
        .with_context(|| format!("adding {}", a.path.display()))?;
        bar.finish_and_clear();
        lines?;
        if a.quieter {
            writeln!(out, "{}", root.cid)?;
        }
        st.pin(&root.cid, ADD_LABEL)?;
        Ok(root.cid)
    })
    .await??;
    push(client, &store, &root).await
}

/// Makes sure the node behind `client` has and pins `root`: nothing to send when it shares
/// this store, else the DAG goes over as a CAR. No node running is fine: the local store is
/// what a later `serve` on this data dir uses.
async fn push(client: &Client, store: &Arc<BlockStore>, root: &Cid) -> Result<()> {
    if client.alive().await.is_err() {
        eprintln!(
            "note: no node answered at {}; {root} is in the local store at {} only",
            client.base_url(),
            store.dir().display()
        );
        return Ok(());
    }
    if client.raw_block(&root.to_string()).await?.is_some() && client.pin(&root.to_string(), ADD_LABEL).await.is_ok() {
        return Ok(());
    }
    let spool = tempfile::NamedTempFile::new_in(store.dir()).context("cannot create a temporary CAR file")?;
    let (st, r, path) = (store.clone(), *root, spool.path().to_owned());
    tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut f = io::BufWriter::new(std::fs::File::create(&path)?);
        bacalhau_ipfs::export_car(st.as_ref(), &r, &mut f)?;
        f.flush()
    })
    .await??;
    client.import_car(spool.path(), ADD_LABEL).await.with_context(|| format!("sending {root} to the node"))?;
    Ok(())
}

/// Blocks from the local store, else from the node's gateway (verified, then kept locally).
struct Remote {
    store: Arc<BlockStore>,
    client: Client,
    handle: tokio::runtime::Handle,
}

impl BlockSource for Remote {
    fn block(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>> {
        if let Some(d) = self.store.get(cid)? {
            return Ok(Some(d));
        }
        let Some(d) = self.handle.block_on(self.client.raw_block(&cid.to_string())).map_err(io::Error::other)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("block {cid} is neither in the local store nor on the node at {}", self.client.base_url()),
            ));
        };
        if !cid.verifies(&d) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the node sent a block that does not match {cid}; refusing it"),
            ));
        }
        self.store.put_bytes(cid, &d)?;
        Ok(Some(d))
    }
}

/// Runs `f` on a blocking thread with a block source that reaches the node when needed.
async fn with_remote<T: Send + 'static>(
    client: &Client,
    data_dir: &Path,
    f: impl FnOnce(&Remote) -> Result<T> + Send + 'static,
) -> Result<T> {
    let remote =
        Remote { store: local_store(data_dir)?, client: client.clone(), handle: tokio::runtime::Handle::current() };
    tokio::task::spawn_blocking(move || {
        // Cached blocks are not pinned: keep garbage collection away while they are used.
        let _guard = remote.store.writer()?;
        f(&remote)
    })
    .await?
}

async fn ls(client: &Client, data_dir: &Path, a: &IpfsCatArgs) -> Result<()> {
    let (root, path) = parse_target(&a.cid)?;
    let lines = with_remote(client, data_dir, move |src| {
        let dir = bacalhau_ipfs::resolve(src, &root, &path)?;
        if dir.codec() == CODEC_RAW {
            bail!("{dir} is a file, not a folder: print it with `bacalhau ipfs cat {dir}`");
        }
        let entries = bacalhau_ipfs::read_dir(src, &dir).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => anyhow::anyhow!("{e}: print a file with `bacalhau ipfs cat {dir}`"),
            _ => e.into(),
        })?;
        let mut lines = Vec::with_capacity(entries.len());
        for entry in entries {
            let child = entry.cid;
            let data = src.block(&child)?.unwrap_or_default();
            let (size, suffix) = if child.codec() == CODEC_RAW {
                (data.len().to_string(), "")
            } else {
                let n = dagpb::decode_node(&data).with_context(|| format!("block {child}"))?;
                let f = dagpb::decode_unixfs(&n.data).with_context(|| format!("block {child}"))?;
                match f.kind {
                    dagpb::UnixfsType::Directory | dagpb::UnixfsType::HamtShard => ("-".to_owned(), "/"),
                    dagpb::UnixfsType::Symlink => (f.data.len().to_string(), ""),
                    _ => (f.filesize.unwrap_or(0).to_string(), ""),
                }
            };
            lines.push(format!("{child} {size} {}{suffix}", entry.name));
        }
        Ok(lines)
    })
    .await?;
    let mut out = io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

/// Fetches every block of `root` that `store` lacks from the node's gateway, verifying each.
pub async fn fetch_dag(client: &Client, store: &BlockStore, root: &Cid) -> Result<()> {
    let mut todo = vec![*root];
    let mut seen = HashSet::new();
    while let Some(cid) = todo.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = match store.get(&cid)? {
            Some(d) => d,
            None => {
                let d = client
                    .raw_block(&cid.to_string())
                    .await?
                    .with_context(|| format!("block {cid} is neither here nor on the node at {}", client.base_url()))?;
                if !cid.verifies(&d) {
                    bail!("the node sent a block that does not match {cid}; refusing it");
                }
                store.put_bytes(&cid, &d)?;
                d
            }
        };
        if cid.codec() != CODEC_RAW {
            let node = dagpb::decode_node(&data).with_context(|| format!("block {cid}"))?;
            todo.extend(node.links.iter().map(|l| l.0));
        }
    }
    Ok(())
}

async fn get(client: &Client, data_dir: &Path, a: &IpfsGetArgs) -> Result<()> {
    let (root, path) = parse_target(&a.cid)?;
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).map_or_else(|| root.to_string(), str::to_owned);
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from(name));
    if out.exists() {
        bail!("{} already exists: choose another place with -o", out.display());
    }
    let dest = out.clone();
    let cid = with_remote(client, data_dir, move |src| {
        let cid = bacalhau_ipfs::resolve(src, &root, &path)?;
        bacalhau_ipfs::export(src, &cid, &dest).with_context(|| format!("writing {}", dest.display()))?;
        Ok(cid)
    })
    .await?;
    println!("Saved {cid} to {}", out.display());
    Ok(())
}

async fn cat(client: &Client, data_dir: &Path, a: &IpfsCatArgs) -> Result<()> {
    let (root, path) = parse_target(&a.cid)?;
    with_remote(client, data_dir, move |src| {
        let cid = bacalhau_ipfs::resolve(src, &root, &path)?;
        let mut out = io::BufWriter::new(io::stdout().lock());
        bacalhau_ipfs::cat(src, &cid, &mut out)?;
        out.flush()?;
        Ok(())
    })
    .await
}

async fn dag_export(client: &Client, data_dir: &Path, a: IpfsDagExportArgs) -> Result<()> {
    let (root, path) = parse_target(&a.cid)?;
    if !path.is_empty() {
        bail!("export a CID, not a path inside one (the gateway's /ipfs/CID/path?format=car gives that)");
    }
    with_remote(client, data_dir, move |src| {
        let mut out: Box<dyn Write> = match &a.output {
            Some(p) => Box::new(io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(io::BufWriter::new(io::stdout().lock())),
        };
        bacalhau_ipfs::export_car(src, &root, &mut out)?;
        out.flush()?;
        Ok(())
    })
    .await
}

async fn dag_import(client: &Client, data_dir: &Path, a: &IpfsDagImportArgs) -> Result<()> {
    let node = client.alive().await.is_ok();
    for file in &a.files {
        if node {
            let got = client.import_car(file, "imported by bacalhau ipfs dag import").await?;
            for r in &got.roots {
                println!("Pinned root {r} success");
            }
            println!("Imported {} blocks ({} bytes) from {}", got.blocks, got.bytes, file.display());
            continue;
        }
        let store = local_store(data_dir)?;
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let st = store.clone();
        let got = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let _guard = st.writer()?;
            let got = bacalhau_ipfs::import_car(f, &mut |c, d| st.put_bytes(c, d))?;
            for r in &got.roots {
                if st.has(r) {
                    st.pin(r, "imported by bacalhau ipfs dag import")?;
                }
            }
            Ok(got)
        })
        .await?
        .with_context(|| format!("importing {}", file.display()))?;
        for r in &got.roots {
            println!("Pinned root {r} success");
        }
        println!(
            "Imported {} blocks ({} bytes) from {} into the local store (no node answered at {})",
            got.blocks,
            got.bytes,
            file.display(),
            client.base_url()
        );
    }
    Ok(())
}
