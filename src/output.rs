//! Writing a run's outputs: atomically (temporary file, fsync, rename,
//! fsync of the directory), with `workflows.csv` and `trace.json` streamed
//! while the run goes, so memory does not grow with the number of workflows.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::error::{Error, Result};
use crate::metrics::{
    Observer, Place, RunResult, Summary, TierRow, TraceEvent, TraceKind, WorkflowRecord,
};
use crate::scenario::Scenario;
use crate::sim::{NodeTable, Simulator};

/// Formats a float for CSV: shortest round-trip form; empty for NaN (pandas reads NaN).
pub fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x}")
    }
}

/// A CSV cell for a JSON scalar: integers as integers, floats as by
/// [`fmt_f64`], null as empty.
pub fn fmt_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        serde_json::Value::Number(n) => fmt_f64(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON number, or null for NaN / infinities.
pub fn json_f64(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// What this tool's temporary files are called: `.{name}{TMP_MARK}{pid}`,
/// so that cleanup can recognise them and nothing else.
pub const TMP_MARK: &str = ".agentsched-tmp.";

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TMP_MARK}{}", std::process::id()))
}

/// Makes the renames in `dir` durable. Callers sync each directory once
/// after writing all their files, not once per file.
pub fn sync_dir(dir: &Path) {
    // Best effort: some filesystems refuse to fsync a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// When a file becomes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Temporary file, fsync, rename: atomic and durable on return.
    Atomic,
    /// Written in place, no fsync, and no `summary.json` (the seed's
    /// per-run layout; meta.json carries the digest): for files inside a
    /// staging directory that the caller makes durable ([`make_durable`])
    /// and renames into place as a whole.
    Staged,
}

/// Makes everything written so far under `dirs` durable. On Linux one
/// `syncfs` of their filesystem does it: a single journal commit instead of
/// one per file, which on ext4 would otherwise stall every writing thread.
/// Elsewhere every file and directory is fsynced.
pub fn make_durable_all(dirs: &[PathBuf]) -> Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(first) = dirs.first() {
        let f = File::open(first).map_err(|source| Error::Write {
            path: first.clone(),
            source,
        })?;
        if rustix::fs::syncfs(&f).is_ok() {
            return Ok(());
        }
    }
    for d in dirs {
        make_durable(d)?;
    }
    Ok(())
}

/// Fsyncs every file under `dir`, then every directory, deepest first.
pub fn make_durable(dir: &Path) -> Result<()> {
    let w = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    let mut dirs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(w(&d))? {
            let p = e.map_err(w(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                File::open(&p).and_then(|f| f.sync_all()).map_err(w(&p))?;
            }
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        sync_dir(d);
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename);
/// call [`sync_dir`] on the directory once its files are written.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, Durability::Atomic)
}

/// Writes `bytes` to `path` with the given durability.
pub fn write_file(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let w = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if durability == Durability::Staged {
        return fs::write(path, bytes).map_err(w);
    }
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(w)?;
    f.write_all(bytes).map_err(w)?;
    f.sync_all().map_err(w)?;
    drop(f);
    fs::rename(&tmp, path).map_err(w)?;
    Ok(())
}

/// A file being written under a temporary name, renamed into place by
/// [`StreamFile::commit`]; dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct StreamFile {
    path: PathBuf,
    tmp: PathBuf,
    durability: Durability,
    out: Option<BufWriter<File>>,
    hasher: Sha1,
    error: Option<io::Error>,
    /// Bytes written, and up to where write-back was last started.
    written: u64,
    writeback_from: u64,
    /// The write-back helper of a long file (see `start_writeback`).
    syncer: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
}

/// A long file is flushed to disk in the background every this many bytes,
/// so that the final fsync finds most of it there already.
const WRITEBACK_EVERY: u64 = 8 << 20;

impl StreamFile {
    /// Starts writing `path`.
    pub fn create(path: &Path, durability: Durability) -> Result<StreamFile> {
        let tmp = if durability == Durability::Staged {
            path.to_path_buf()
        } else {
            tmp_path(path)
        };
        let f = File::create(&tmp).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(StreamFile {
            path: path.to_path_buf(),
            tmp,
            durability,
            out: Some(BufWriter::with_capacity(1 << 16, f)),
            hasher: Sha1::new(),
            error: None,
            written: 0,
            writeback_from: 0,
            syncer: None,
        })
    }

    /// Appends bytes; the first I/O error is kept and reported at commit.
    pub fn write(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if self.error.is_none()
            && let Some(out) = self.out.as_mut()
            && let Err(e) = out.write_all(bytes)
        {
            self.error = Some(e);
        }
        self.written += bytes.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            self.start_writeback();
        }
    }

    /// Hands what was written so far to the kernel and has a helper thread
    /// flush it to disk (`fdatasync` on a second handle) while writing goes
    /// on, so the fsync at commit finds little left to do. On this kind of
    /// machine a 73 MB file's fsync drops from ~100 ms to a few ms. The
    /// helper is skipped while it is still busy; the commit's fsync is what
    /// makes the file durable either way.
    fn start_writeback(&mut self) {
        self.writeback_from = self.written;
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if let Err(e) = out.flush() {
            self.error.get_or_insert(e);
            return;
        }
        if self.syncer.is_none() {
            let Ok(handle) = out.get_ref().try_clone() else {
                return;
            };
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            let spawned = std::thread::Builder::new()
                .name("writeback".into())
                .spawn(move || {
                    for () in rx {
                        let _ = handle.sync_data();
                    }
                });
            match spawned {
                Ok(join) => self.syncer = Some((tx, join)),
                Err(_) => return,
            }
        }
        if let Some((tx, _)) = &self.syncer {
            let _ = tx.try_send(());
        }
    }

    /// Stops the write-back helper (waiting for a flush in progress).
    fn stop_writeback(&mut self) {
        if let Some((tx, join)) = self.syncer.take() {
            drop(tx);
            let _ = join.join();
        }
    }

    /// Flushes, fsyncs and renames into place; returns the SHA-1 of the content.
    pub fn commit(mut self) -> Result<[u8; 20]> {
        self.stop_writeback();
        let w = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(e) = self.error.take() {
            return Err(w(e));
        }
        let out = self.out.take().expect("committed once");
        let f = out.into_inner().map_err(|e| w(e.into_error()))?;
        if self.durability == Durability::Atomic {
            f.sync_all().map_err(w)?;
            drop(f);
            fs::rename(&self.tmp, &self.path).map_err(w)?;
        }
        Ok(self.hasher.clone().finalize().into())
    }
}

/// Writes go to [`StreamFile::write`]: an I/O error is kept and reported
/// by [`StreamFile::commit`], so these calls never fail.
impl Write for StreamFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        StreamFile::write(self, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StreamFile {
    fn drop(&mut self) {
        self.stop_writeback();
        if self.out.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// `workflows.csv` columns: the seed's seven first.
pub const WORKFLOW_COLUMNS: &str = "workflow_id,makespan_ms,cost,retries,cancellations,hedges_launched,wasted_ms,\
arrival_ms,finish_ms,status,iterations,nodes,calls,attempts,escalations,rate_limited,queue_wait_ms\n";

/// Appends one `workflows.csv` row to `row` (the fast path: no `format!`
/// per field; the text is what `Display` prints, see [`crate::numtext`]).
fn workflow_row(row: &mut Vec<u8>, r: &WorkflowRecord, redos: bool) {
    use crate::numtext::{push_fixed, push_u64 as n};
    // Times are integer µs printed as ms, money integer nano-dollars as dollars.
    let ms = |row: &mut Vec<u8>, us: u64| push_fixed(row, us, 3);
    n(row, r.workflow_id);
    row.push(b',');
    ms(row, r.makespan().0);
    row.push(b',');
    push_fixed(row, r.cost.0, 9);
    for x in [
        u64::from(r.retries),
        u64::from(r.cancellations),
        u64::from(r.hedges_launched),
    ] {
        row.push(b',');
        n(row, x);
    }
    for us in [r.wasted.0, r.arrival.0, r.finish.0] {
        row.push(b',');
        ms(row, us);
    }
    row.extend_from_slice(if r.ok {
        b",ok,"
    } else if r.interrupted {
        b",interrupted,"
    } else {
        b",failed,"
    });
    n(row, u64::from(r.iterations));
    for x in [
        u64::from(r.nodes),
        u64::from(r.calls),
        u64::from(r.attempts),
        u64::from(r.escalations),
        u64::from(r.rate_limited),
    ] {
        row.push(b',');
        n(row, x);
    }
    row.push(b',');
    ms(row, r.queue_wait.0);
    if redos {
        row.push(b',');
        n(row, u64::from(r.redos));
    }
    row.push(b'\n');
}

/// Records per message to a file's writer thread (fewer for a run with
/// fewer workflows): large enough that hand-offs are rare, small enough to
/// bound memory (a batch is ~800 KB; a few MB in flight). With batches of
/// 1,024 (977 hand-offs of 75 KB of text for 1M records instead of 122 of
/// 600 KB) the simulation of a 1M-customer `simulate` took ~12% longer.
const ROW_BATCH: usize = 8192;
/// Trace events per message (an event is smaller than a workflow record).
const TRACE_BATCH: usize = 4096;

/// What the simulation thread sends a writer thread.
enum Batch<T> {
    Items(Vec<T>),
    /// Everything was sent: write the footer, flush, sync, rename into place.
    Commit,
}

/// A file formatted, hashed and written on a thread of its own, so that on
/// a machine with a spare core the run barely waits for it. Records arrive
/// in order through a FIFO channel, so the bytes are those a single thread
/// writes. Used for `workflows.csv` and `trace.json`.
struct BatchWriter<T: Send + 'static> {
    batch: Vec<T>,
    batch_len: usize,
    tx: Option<std::sync::mpsc::SyncSender<Batch<T>>>,
    /// Emptied batches the writer hands back, so the simulation thread
    /// refills warm memory instead of allocating (and faulting in) a fresh
    /// batch for every `batch_len` records.
    spare: std::sync::mpsc::Receiver<Vec<T>>,
    handle: Option<std::thread::JoinHandle<Result<[u8; 20]>>>,
}

impl<T: Send + 'static> std::fmt::Debug for BatchWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("buffered", &self.batch.len())
            .finish()
    }
}

impl<T: Send + 'static> BatchWriter<T> {
    /// Starts the thread `name`; `format` appends the text of one record
    /// (`Some`), and after the last one (`None`) whatever is left to write.
    fn start(
        name: &str,
        mut file: StreamFile,
        batch_len: usize,
        mut format: impl FnMut(&mut Vec<u8>, Option<&T>) + Send + 'static,
    ) -> Result<BatchWriter<T>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<T>>(4);
        let (spare_tx, spare) = std::sync::mpsc::sync_channel::<Vec<T>>(4);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // A whole batch is formatted into one buffer and handed over
                // in one write: one hash update and no copy per record.
                let mut text = Vec::with_capacity(batch_len * 128);
                for msg in rx {
                    match msg {
                        Batch::Items(mut items) => {
                            text.clear();
                            for r in &items {
                                format(&mut text, Some(r));
                            }
                            file.write(&text);
                            items.clear();
                            // Dropped instead when enough are waiting.
                            let _ = spare_tx.try_send(items);
                        }
                        Batch::Commit => {
                            text.clear();
                            format(&mut text, None);
                            file.write(&text);
                            return file.commit();
                        }
                    }
                }
                // The run ended without a commit: the temporary file goes.
                Err(Error::Execution("output not committed".into()))
            })
            .map_err(|e| Error::Execution(format!("cannot start the {name} writer: {e}")))?;
        Ok(BatchWriter {
            batch: Vec::with_capacity(batch_len),
            batch_len,
            tx: Some(tx),
            spare,
            handle: Some(handle),
        })
    }

    fn push(&mut self, r: T) {
        self.batch.push(r);
        if self.batch.len() == self.batch_len {
            let next = self
                .spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(self.batch_len));
            let full = std::mem::replace(&mut self.batch, next);
            self.send(Batch::Items(full));
        }
    }

    fn send(&mut self, msg: Batch<T>) {
        // A writer that stopped (it only stops on commit) reports at join.
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }

    fn commit(mut self) -> Result<[u8; 20]> {
        let rest = std::mem::take(&mut self.batch);
        self.send(Batch::Items(rest));
        self.send(Batch::Commit);
        self.tx = None;
        self.handle
            .take()
            .expect("joined once")
            .join()
            .unwrap_or_else(|_| Err(Error::Execution("an output writer panicked".into())))
    }
}

impl<T: Send + 'static> Drop for BatchWriter<T> {
    fn drop(&mut self) {
        // Uncommitted (the run failed): close the channel and wait, so the
        // temporary file is gone when the caller reports the failure.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The names a trace line prints (a copy for the trace's writer thread).
#[derive(Clone, Debug)]
struct TraceNames {
    node_types: Vec<String>,
    providers: Vec<String>,
    pools: Vec<String>,
}

/// Streams `workflows.csv` in id order (records arrive in completion order;
/// its writer thread puts them back in order) and, optionally, `trace.json`.
#[derive(Debug)]
pub struct FileObserver {
    workflows: BatchWriter<WorkflowRecord>,
    trace: Option<BatchWriter<TraceEvent>>,
}

/// Puts workflow records, which arrive in completion order, back in id
/// order: each waits only until every lower id has passed.
#[derive(Debug, Default)]
struct IdOrder {
    /// Records that finished before a lower id: slot `i` holds id
    /// `next + i` (a ring, so the near-in-order common case moves nothing).
    pending: std::collections::VecDeque<Option<WorkflowRecord>>,
    next: u64,
}

impl IdOrder {
    /// Takes `r`, and hands `emit` every record now in order.
    fn put(&mut self, r: &WorkflowRecord, mut emit: impl FnMut(&WorkflowRecord)) {
        if r.workflow_id == self.next && self.pending.is_empty() {
            emit(r);
            self.next += 1;
            return;
        }
        let slot = (r.workflow_id - self.next) as usize;
        if self.pending.len() <= slot {
            self.pending.resize(slot + 1, None);
        }
        self.pending[slot] = Some(r.clone());
        while let Some(Some(_)) = self.pending.front() {
            let r = self.pending.pop_front().flatten().expect("checked");
            emit(&r);
            self.next += 1;
        }
    }

    /// Hands `emit` the records still held, in id order (a run that ends
    /// with every workflow finished holds none).
    fn drain(&mut self, emit: impl FnMut(&WorkflowRecord)) {
        std::mem::take(&mut self.pending)
            .iter()
            .flatten()
            .for_each(emit);
    }
}

impl FileObserver {
    /// Starts `dir/workflows.csv` (and `dir/trace.json` when `trace`) for
    /// a run of `s`.
    pub fn create(
        dir: &Path,
        trace: bool,
        s: &Scenario,
        durability: Durability,
    ) -> Result<FileObserver> {
        let table = NodeTable::build(s);
        let names = TraceNames {
            node_types: table.names,
            providers: table.providers,
            pools: table.pools,
        };
        let redos = s.redos_possible();
        let mut workflows = StreamFile::create(&dir.join("workflows.csv"), durability)?;
        if redos {
            workflows.write(WORKFLOW_COLUMNS.trim_end().as_bytes());
            workflows.write(b",redos\n");
        } else {
            workflows.write(WORKFLOW_COLUMNS.as_bytes());
        }
        let trace = if trace {
            let mut t = StreamFile::create(&dir.join("trace.json"), durability)?;
            t.write(b"[\n");
            let mut first = true;
            Some(BatchWriter::start(
                "trace.json",
                t,
                TRACE_BATCH,
                move |out: &mut Vec<u8>, e: Option<&TraceEvent>| {
                    let Some(e) = e else {
                        out.extend_from_slice(b"\n]\n");
                        return;
                    };
                    if !first {
                        out.extend_from_slice(b",\n");
                    }
                    first = false;
                    trace_json(out, e, &names);
                },
            )?)
        } else {
            None
        };
        // Records come in completion order; the writer thread puts them
        // back in id order, off the simulation's thread.
        let mut order = IdOrder::default();
        Ok(FileObserver {
            workflows: BatchWriter::start(
                "workflows.csv",
                workflows,
                ROW_BATCH.min(s.workload.workflows.max(1) as usize),
                move |out: &mut Vec<u8>, r: Option<&WorkflowRecord>| match r {
                    Some(r) => order.put(r, |r| workflow_row(out, r, redos)),
                    None => order.drain(|r| workflow_row(out, r, redos)),
                },
            )?,
            trace,
        })
    }

    /// Commits the files; returns the SHA-1 of `workflows.csv`.
    pub fn finish(mut self) -> Result<[u8; 20]> {
        if let Some(t) = self.trace.take() {
            t.commit()?;
        }
        self.workflows.commit()
    }
}

/// Appends one trace event as a JSON object.
fn trace_json(out: &mut Vec<u8>, e: &TraceEvent, names: &TraceNames) {
    use crate::numtext::{push_fixed, push_u64};
    out.extend_from_slice(b"{\"t_ms\":");
    push_fixed(out, e.t.0, 3);
    let ev: &[u8] = match e.kind {
        TraceKind::Arrive => b"arrive",
        TraceKind::Ready => b"ready",
        TraceKind::Start(_) => b"start",
        TraceKind::End(_) => b"end",
        TraceKind::NodeDone => b"node_done",
        TraceKind::WorkflowDone(_) => b"workflow_done",
        TraceKind::Redo => b"redo",
    };
    out.extend_from_slice(b",\"ev\":\"");
    out.extend_from_slice(ev);
    out.extend_from_slice(b"\",\"workflow\":");
    push_u64(out, e.workflow);
    if !matches!(e.kind, TraceKind::Arrive | TraceKind::WorkflowDone(_)) {
        out.extend_from_slice(b",\"node\":");
        push_u64(out, u64::from(e.node));
        out.extend_from_slice(b",\"node_type\":\"");
        out.extend_from_slice(names.node_types[e.node_type as usize].as_bytes());
        out.push(b'"');
    }
    match e.place {
        Place::None => {}
        Place::Tier { provider, tier } => {
            out.extend_from_slice(b",\"provider\":\"");
            out.extend_from_slice(names.providers[provider as usize].as_bytes());
            out.extend_from_slice(b"\",\"tier\":");
            push_u64(out, u64::from(tier));
            out.extend_from_slice(b",\"attempt\":");
            push_u64(out, u64::from(e.attempt));
            out.extend_from_slice(b",\"model\":");
            push_u64(out, u64::from(e.model));
        }
        Place::Pool(p) => {
            out.extend_from_slice(b",\"provider\":\"");
            out.extend_from_slice(names.pools[p as usize].as_bytes());
            out.extend_from_slice(b"\",\"tier\":0");
        }
    }
    match e.kind {
        TraceKind::Start(k) => {
            out.extend_from_slice(b",\"start_kind\":\"");
            out.extend_from_slice(k.name().as_bytes());
            out.push(b'"');
        }
        TraceKind::End(o) => {
            out.extend_from_slice(b",\"outcome\":\"");
            out.extend_from_slice(o.name().as_bytes());
            out.extend_from_slice(b"\",\"cost\":");
            push_fixed(out, e.cost.0, 9);
            if let Some(ttft) = e.ttft {
                out.extend_from_slice(b",\"ttft_ms\":");
                push_fixed(out, ttft.0, 3);
            }
        }
        TraceKind::WorkflowDone(ok) => {
            out.extend_from_slice(if ok {
                b",\"ok\":true"
            } else {
                b",\"ok\":false"
            });
        }
        TraceKind::Redo => {
            out.extend_from_slice(b",\"cost\":");
            push_fixed(out, e.cost.0, 9);
        }
        _ => {}
    }
    out.push(b'}');
}

impl Observer for FileObserver {
    fn workflow_done(&mut self, rec: &WorkflowRecord) {
        self.workflows.push(rec.clone());
    }

    fn wants_trace(&self) -> bool {
        self.trace.is_some()
    }

    fn trace(&mut self, e: &TraceEvent) {
        if let Some(t) = self.trace.as_mut() {
            t.push(*e);
        }
    }
}

/// `tiers.csv` bytes. Rows of runs with token limits add
/// `rate_limited_tokens`, of runs that can redo calls `redos`, and of runs
/// that model prefix caching `cached_input_tokens` and `cache_write_tokens`.
pub fn tiers_csv(rows: &[TierRow]) -> Vec<u8> {
    let tokens = rows.iter().any(|r| r.rate_limited_tokens.is_some());
    let redos = rows.iter().any(|r| r.redos.is_some());
    let cached = rows.iter().any(|r| r.cached_input_tokens.is_some());
    let mut out = String::from(
        "provider,tier_id,utilization,queue_wait_p95_ms,in_flight_avg,kind,slots,requests,successes,failures,\
timeouts,rate_limited,cancelled,hedges,escalations_in,queue_wait_mean_ms,queue_wait_p50_ms,service_mean_ms,cost",
    );
    if tokens {
        out.push_str(",rate_limited_tokens");
    }
    if redos {
        out.push_str(",redos");
    }
    if cached {
        out.push_str(",cached_input_tokens,cache_write_tokens");
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.provider,
            r.tier_id,
            fmt_f64(r.utilization),
            fmt_f64(r.queue_wait_p95_ms),
            fmt_f64(r.in_flight_avg),
            r.kind,
            r.slots,
            r.requests,
            r.successes,
            r.failures,
            r.timeouts,
            r.rate_limited,
            r.cancelled,
            r.hedges,
            r.escalations_in,
            fmt_f64(r.queue_wait_mean_ms),
            fmt_f64(r.queue_wait_p50_ms),
            fmt_f64(r.service_mean_ms),
            fmt_f64(r.cost),
        ));
        if tokens {
            out.push_str(&format!(",{}", r.rate_limited_tokens.unwrap_or(0)));
        }
        if redos {
            out.push_str(&format!(",{}", r.redos.unwrap_or(0)));
        }
        if cached {
            out.push_str(&format!(
                ",{},{}",
                r.cached_input_tokens.unwrap_or(0),
                r.cache_write_tokens.unwrap_or(0)
            ));
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Appends the `extra` columns whose names `fields` does not have yet: a
/// live run's own streaming metrics give way to the summary's, which the
/// runtime computed from the same replies when the scenario streams.
fn extend_new<'a>(
    fields: &mut Vec<(&'a str, serde_json::Value)>,
    extra: &[(&'a str, serde_json::Value)],
) {
    for (k, v) in extra {
        if !fields.iter().any(|(f, _)| f == k) {
            fields.push((k, v.clone()));
        }
    }
}

/// `summary.csv` bytes: a header and one row.
pub fn summary_csv(s: &Summary, policy: &str) -> Vec<u8> {
    summary_csv_with(s, policy, &[])
}

/// `summary.csv` with `extra` columns after the simulator's (a live run's).
pub fn summary_csv_with(s: &Summary, policy: &str, extra: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut fields = s.fields();
    extend_new(&mut fields, extra);
    let mut head = String::from("policy");
    let mut row = policy.to_string();
    for (k, v) in fields {
        head.push(',');
        head.push_str(k);
        row.push(',');
        row.push_str(&fmt_value(&v));
    }
    format!("{head}\n{row}\n").into_bytes()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of a run's deterministic outputs: SHA-1 over the SHA-1 of
/// `workflows.csv`, `tiers.csv` and `summary.csv` without `wall_time_s`.
pub fn output_digest(
    workflows_sha: &[u8; 20],
    tiers: &[u8],
    summary: &Summary,
    policy: &str,
) -> String {
    let mut s = summary.clone();
    s.wall_time_s = 0.0;
    let mut h = Sha1::new();
    h.update(workflows_sha);
    h.update(Sha1::digest(tiers));
    h.update(Sha1::digest(summary_csv(&s, policy)));
    hex(&h.finalize())
}

/// Writes `summary.csv`, `summary.json` and `tiers.csv` into `dir`; returns
/// the output digest. `extra` summary columns (a live run's metrics) are
/// appended to `summary.csv` and `summary.json`; the digest covers the
/// simulator's columns only.
pub fn write_run_files(
    dir: &Path,
    result: &RunResult,
    workflows_sha: &[u8; 20],
    meta: &serde_json::Map<String, serde_json::Value>,
    policy: &str,
    durability: Durability,
    extra: &[(&str, serde_json::Value)],
) -> Result<String> {
    let tiers = tiers_csv(&result.tiers);
    let digest = output_digest(workflows_sha, &tiers, &result.summary, policy);
    atomic_write(&dir.join("tiers.csv"), &tiers)?;
    atomic_write(
        &dir.join("summary.csv"),
        &summary_csv_with(&result.summary, policy, extra),
    )?;
    let mut json = serde_json::Map::new();
    json.insert("policy".into(), policy.into());
    let mut fields = result.summary.fields();
    let simulator_columns = fields.len();
    extend_new(&mut fields, extra);
    // Which columns the digest leaves out, so that it can be recomputed
    // from the files (which they are depends on the scenario: a streaming
    // one has the simulator's own TTFT columns).
    let appended: Vec<serde_json::Value> = fields[simulator_columns..]
        .iter()
        .map(|(k, _)| (*k).into())
        .collect();
    for (k, v) in fields {
        json.insert(k.into(), v);
    }
    json.insert("output_digest".into(), digest.clone().into());
    if !appended.is_empty() {
        json.insert("live_columns".into(), appended.into());
    }
    for (k, v) in meta {
        json.insert(k.clone(), v.clone());
    }
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(json)).expect("json");
    text.push('\n');
    if durability == Durability::Atomic {
        write_file(&dir.join("summary.json"), text.as_bytes(), durability)?;
    }
    Ok(digest)
}

/// Whether two paths name the same file (an output path that does not exist
/// yet is resolved through its directory).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Some(dir.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses an output (`flag` `output`) that would replace one of the
/// command's `inputs` (flag, path): an output never overwrites an input.
pub fn refuse_overwriting_inputs(
    flag: &str,
    output: &Path,
    inputs: &[(&str, &Path)],
) -> Result<()> {
    for (input_flag, input) in inputs {
        if same_file(output, input) {
            return Err(Error::Input(format!(
                "{flag} {}: is the {input_flag} file; an output never overwrites an input",
                output.display()
            )));
        }
    }
    Ok(())
}

/// Creates `out` if missing; refuses an existing file.
pub fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Input(format!(
            "--out {}: exists and is not a directory",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// What a simulation wrote.
#[derive(Debug)]
pub struct SimulationOutput {
    /// The run's result (with `wall_time_s`).
    pub result: RunResult,
    /// The output digest.
    pub digest: String,
}

/// Runs `s` and writes its outputs into `out`.
pub fn simulate_to_dir(s: &Scenario, out: &Path, trace: bool) -> Result<SimulationOutput> {
    simulate_to_dir_with(s, out, trace, Durability::Atomic)
}

/// [`simulate_to_dir`] with a choice of durability (sweeps stage runs).
pub fn simulate_to_dir_with(
    s: &Scenario,
    out: &Path,
    trace: bool,
    durability: Durability,
) -> Result<SimulationOutput> {
    prepare_out_dir(out)?;
    let mut obs = FileObserver::create(out, trace, s, durability)?;
    let started = std::time::Instant::now();
    let mut result = Simulator::new(s, &mut obs)
        .run_checked()
        .map_err(|e| Error::Input(format!("scenario `{}`: {e}", s.name)))?;
    result.summary.wall_time_s = started.elapsed().as_secs_f64();
    let workflows_sha = obs.finish()?;
    let mut meta = serde_json::Map::new();
    meta.insert("scenario".into(), s.name.clone().into());
    meta.insert("seed".into(), s.seed.into());
    meta.insert("time_scale".into(), crate::output::json_f64(s.time_scale));
    meta.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    let digest = write_run_files(
        out,
        &result,
        &workflows_sha,
        &meta,
        s.policy.name(),
        durability,
        &[],
    )?;
    if durability == Durability::Atomic {
        // What `live run --from-run` and `fidelity` replay (sweep runs are
        // found again through experiment.json instead: no copy per run).
        atomic_write(
            &out.join(crate::recorded::SCENARIO_FILE),
            s.to_pretty_json().as_bytes(),
        )?;
        sync_dir(out);
    }
    Ok(SimulationOutput { result, digest })
}

/// The two lines `simulate` prints (also each sweep run's stdout.txt).
pub fn summary_lines(s: &Scenario, out: &SimulationOutput, dir: &Path) -> String {
    let m = &out.result.summary;
    format!(
        "{} {} workflows ({} failed): makespan p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms; cost mean {:.4}, total {:.4}\n\
         hedges {} (won {}), escalations {}, retries {}, events {}, {:.3} s; digest {}; outputs in {}\n",
        s.policy.name(),
        m.workflows,
        m.failed,
        m.makespan_p50_ms,
        m.makespan_p95_ms,
        m.makespan_p99_ms,
        m.cost_mean,
        m.cost_total,
        m.hedges,
        m.hedge_wins,
        m.escalations,
        m.retries,
        m.events,
        m.wall_time_s,
        &out.digest[..12],
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Money, SimDuration, SimTime};

    fn record(id: u64) -> WorkflowRecord {
        WorkflowRecord {
            workflow_id: id,
            arrival: SimTime(id * 1_000),
            finish: SimTime(id * 1_000 + 2_500 + id * 7),
            ok: id % 3 != 0,
            cost: Money(id * 1_234_567),
            retries: id as u32,
            rate_limited: 0,
            cancellations: 1,
            hedges_launched: 0,
            escalations: 2,
            wasted: SimDuration(125 * id),
            iterations: 1,
            nodes: 3,
            calls: 2,
            attempts: 4,
            redos: 0,
            queue_wait: SimDuration(333),
            interrupted: false,
        }
    }

    /// A record is handed on as soon as every lower id has been; at the
    /// end the rest come in id order, past ids that never finished.
    #[test]
    fn id_order_waits_only_for_lower_ids_and_drains_past_gaps() {
        let mut order = IdOrder::default();
        let mut out = vec![];
        for id in [3, 1, 0, 5] {
            order.put(&record(id), |r| out.push(r.workflow_id));
            if id == 0 {
                assert_eq!(out, [0, 1], "0 frees 1, and 2 has not finished");
            }
        }
        order.drain(|r| out.push(r.workflow_id));
        assert_eq!(out, [0, 1, 3, 5]);
        order.drain(|r| out.push(r.workflow_id));
        assert_eq!(out.len(), 4, "drained once");
    }

    /// Records finishing out of order (across batch boundaries of the
    /// writer thread) come out in id order, row for row what the plain
    /// `format!` text was, and the returned digest is the file's.
    #[test]
    fn rows_come_out_in_id_order_with_the_display_text() {
        // Without and with the `redos` column (model routing can redo calls).
        for routing in [false, true] {
            let mut s = Scenario::default_research_agent();
            s.ablations.enable_model_routing = routing;
            // Three full batches and a part: the batch is as long as in a big run.
            let n = 3 * ROW_BATCH as u64 + 17;
            s.workload.workflows = n;
            let tmp = tempfile::tempdir().unwrap();
            let mut obs = FileObserver::create(tmp.path(), false, &s, Durability::Atomic).unwrap();
            // Each block of five finishes in the order 2, 0, 4, 1, 3.
            let mut order: Vec<u64> = (0..n).collect();
            for chunk in order.chunks_mut(5) {
                if chunk.len() == 5 {
                    let c = [chunk[2], chunk[0], chunk[4], chunk[1], chunk[3]];
                    chunk.copy_from_slice(&c);
                }
            }
            // The last workflow to finish is the first one.
            order.retain(|&i| i != 0);
            order.push(0);
            for id in order {
                obs.workflow_done(&record(id));
            }
            let sha = obs.finish().unwrap();
            let text = std::fs::read_to_string(tmp.path().join("workflows.csv")).unwrap();
            let mut lines = text.lines();
            let head = lines.next().unwrap();
            assert!(head.starts_with("workflow_id,makespan_ms,cost,"));
            // The default scenario's quality curve can redo calls once routing is on.
            assert_eq!(head.ends_with(",redos"), routing);
            let redos = if routing { ",0" } else { "" };
            for id in 0..n {
                let r = record(id);
                let status = if r.ok { "ok" } else { "failed" };
                let expected = format!(
                    "{id},{},{},{},1,0,{},{},{},{status},1,3,2,4,2,0,{}{redos}",
                    r.makespan().as_ms(),
                    r.cost.as_dollars(),
                    r.retries,
                    r.wasted.as_ms(),
                    r.arrival.as_ms(),
                    r.finish.as_ms(),
                    r.queue_wait.as_ms(),
                );
                assert_eq!(lines.next().unwrap(), expected, "row {id}");
            }
            assert!(lines.next().is_none());
            let digest: [u8; 20] = Sha1::digest(text.as_bytes()).into();
            assert_eq!(sha, digest);
        }
    }
}
