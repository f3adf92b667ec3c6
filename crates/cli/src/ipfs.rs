//! `bacalhau ipfs ...` and fetching DAGs from a node's gateway.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bacalhau_api::Client;
use bacalhau_ipfs::{BlockStore, CODEC_RAW, Cid, ImportOptions, Importer, dagpb};

use crate::args::{IpfsAddArgs, IpfsCatArgs, IpfsCommand, IpfsGetArgs};

/// The local store: `<data dir>/ipfs`, the same one `serve` uses.
fn local_store(data_dir: &Path) -> Result<BlockStore> {
    let dir = data_dir.join("ipfs");
    BlockStore::open(&dir).with_context(|| format!("cannot open the IPFS store in {}", dir.display()))
}

/// Runs an `ipfs` command.
pub async fn run(client: &Client, data_dir: &Path, cmd: IpfsCommand) -> Result<()> {
    match cmd {
        IpfsCommand::Add(a) => add(data_dir, &a),
        IpfsCommand::Get(a) => get(client, data_dir, &a).await,
        IpfsCommand::Cat(a) => cat(client, data_dir, &a).await,
        IpfsCommand::Ls(a) => ls(client, data_dir, &a).await,
    }
}

fn add(data_dir: &Path, a: &IpfsAddArgs) -> Result<()> {
    let meta = std::fs::symlink_metadata(&a.path).with_context(|| format!("cannot read {}", a.path.display()))?;
    if meta.is_dir() && !a.recursive {
        bail!("{} is a folder: add it with -r", a.path.display());
    }
    let store = local_store(data_dir)?;
    let opts = ImportOptions { cid_version: a.cid_version, raw_leaves: a.cid_version == 1, hidden: a.hidden };
    let root = Importer::new(opts, |c, d| store.put_bytes(c, d))
        .path(&a.path)
        .with_context(|| format!("adding {}", a.path.display()))?;
    if a.quieter {
        println!("{}", root.cid);
    } else {
        let name =
            a.path.file_name().map_or_else(|| a.path.display().to_string(), |n| n.to_string_lossy().into_owned());
        println!("added {} {name}", root.cid);
    }
    Ok(())
}

/// One block: from the local store, else from the node's gateway (verified, then kept).
async fn block(client: &Client, store: &BlockStore, cid: &Cid) -> Result<Vec<u8>> {
    if let Some(d) = store.get(cid)? {
        return Ok(d);
    }
    let d = client
        .raw_block(&cid.to_string())
        .await?
        .with_context(|| format!("block {cid} is neither here nor on the node at {}", client.base_url()))?;
    if !cid.verifies(&d) {
        bail!("the node sent a block that does not match {cid}; refusing it");
    }
    store.put_bytes(cid, &d)?;
    Ok(d)
}

async fn ls(client: &Client, data_dir: &Path, a: &IpfsCatArgs) -> Result<()> {
    let cid = Cid::parse(&a.cid)?;
    let store = local_store(data_dir)?;
    let root = block(client, &store, &cid).await?;
    if cid.codec() == CODEC_RAW {
        bail!("{cid} is a file, not a folder: print it with `bacalhau ipfs cat {cid}`");
    }
    let node = dagpb::decode_node(&root).with_context(|| format!("block {cid}"))?;
    let fs = dagpb::decode_unixfs(&node.data).with_context(|| format!("block {cid}"))?;
    if fs.kind != dagpb::UnixfsType::Directory {
        bail!("{cid} is not a folder: print it with `bacalhau ipfs cat {cid}`");
    }
    for (child, name, _) in &node.links {
        let data = block(client, &store, child).await?;
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
        println!("{child} {size} {name}{suffix}");
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
        let data = block(client, store, &cid).await?;
        if cid.codec() != CODEC_RAW {
            let node = dagpb::decode_node(&data).with_context(|| format!("block {cid}"))?;
            todo.extend(node.links.iter().map(|l| l.0));
        }
    }
    Ok(())
}

async fn get(client: &Client, data_dir: &Path, a: &IpfsGetArgs) -> Result<()> {
    let cid = Cid::parse(&a.cid)?;
    let store = local_store(data_dir)?;
    fetch_dag(client, &store, &cid).await?;
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from(cid.to_string()));
    if out.exists() {
        bail!("{} already exists: choose another place with -o", out.display());
    }
    bacalhau_ipfs::export(&store, &cid, &out).with_context(|| format!("writing {}", out.display()))?;
    println!("Saved {cid} to {}", out.display());
    Ok(())
}

async fn cat(client: &Client, data_dir: &Path, a: &IpfsCatArgs) -> Result<()> {
    let cid = Cid::parse(&a.cid)?;
    let store = local_store(data_dir)?;
    fetch_dag(client, &store, &cid).await?;
    let mut out = std::io::stdout().lock();
    bacalhau_ipfs::cat(&store, &cid, &mut out)?;
    out.flush()?;
    Ok(())
}
