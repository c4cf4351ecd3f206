//! Transcript tests: Raft scenarios written as commands over `testkit::Cluster` in manual
//! delivery mode, each followed by what the nodes did (`Ready`s and messages, one line each),
//! checked against the golden files in `core/testdata/*.txt` (the shape of etcd-io/raft's
//! `testdata` run by its `InteractionEnv`). A reviewer reads the protocol's behaviour in the
//! files; a change in behaviour shows up as a diff of them.
//!
//! `TRANSCRIPT_REWRITE=1 cargo test -p simple-cache-core --test transcripts` rewrites the files
//! with what the code does now; review the diff like code.
//!
//! File format: blocks of
//!
//! ```text
//! # comments (kept as they are)
//! command arg key=value
//! ----
//! output lines
//! (a blank line ends the block)
//! ```
//!
//! Commands (node ids are numbers):
//! - `cluster voters=N [prevote=off] [checkquorum=off] [seed=S]`: a new cluster of voters 1..N.
//! - `add-node ID`: a node with an empty disk (to join through `change`).
//! - `tick ID`: move time to the node's next deadline (if later) and tick it.
//! - `elapse MS`: move time on without ticking anyone.
//! - `run MS`: let MS pass with every node ticked when due and every message delivered at once
//!   (not printed; follow with `status`).
//! - `deliver [from=ID] [to=ID] [type=Kind]`: deliver the waiting messages that match, in
//!   order (one round: what they cause waits for the next command).
//! - `drop [from=ID] [to=ID] [type=Kind]`: drop them instead.
//! - `stabilize`: deliver until no message waits (at most 10,000).
//! - `propose ID TEXT`, `read ID READ_ID`, `transfer ID TARGET`, `change ID add|promote|remove N`.
//! - `crash ID`, `restart ID`, `compact ID`, `partition 1,2 3`, `heal`.
//! - `mailbox`: the waiting messages; `status`: one line per node; `reads ID`: the node's reads.
//!
//! A `send` in a node's output is what its `Ready` asked for; a cut link (`partition`) drops the
//! message before it reaches the mailbox.

use simple_cache_core::message::{MembershipChange, Message, ReadId};
use simple_cache_core::testkit::{Cluster, test_config};
use simple_cache_core::types::NodeId;
use std::fmt::Write as _;
use std::path::Path;

const STABILIZE_MAX: usize = 10_000;

struct Env {
    cluster: Option<Cluster>,
}

impl Env {
    fn c(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("the transcript starts with `cluster`")
    }

    /// Runs one command; returns its output.
    fn run(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = words.split_first().ok_or("empty command")?;
        let mut out = String::new();
        if let Some(c) = self.cluster.as_mut() {
            c.trace = Some(Vec::new());
        }
        match *cmd {
            "cluster" => {
                let voters: u64 = kv(args, "voters").unwrap_or("3").parse().map_err(err)?;
                let seed: u64 = kv(args, "seed").unwrap_or("1").parse().map_err(err)?;
                let pre_vote = kv(args, "prevote") != Some("off");
                let check_quorum = kv(args, "checkquorum") != Some("off");
                let config = move |id| {
                    let mut c = test_config(id);
                    c.pre_vote = pre_vote;
                    c.check_quorum = check_quorum;
                    c
                };
                let mut c = Cluster::with_config(voters, seed, Box::new(config));
                c.manual = true;
                c.trace = Some(Vec::new());
                self.cluster = Some(c);
            }
            "add-node" => {
                let id = node(args.first())?;
                self.c().add_empty_node(id);
            }
            "tick" => {
                let id = node(args.first())?;
                let c = self.c();
                let at = c.node(id).raft.next_deadline();
                c.now = c.now.max(at);
                let now = c.now;
                c.raft(id).tick(now);
                c.process(id);
                writeln!(out, "now={now}").unwrap();
            }
            "run" => {
                // Time passes with every node ticking when due and every message delivered at
                // once; what happens is summarized by `status`, not printed.
                let ms: u64 = args.first().ok_or("run MS")?.parse().map_err(err)?;
                let c = self.c();
                let end = c.now.saturating_add_ms(ms);
                loop {
                    let mut delivered = 0;
                    while !c.mailbox.is_empty() && delivered < STABILIZE_MAX {
                        let m = c.mailbox.remove(0);
                        c.deliver(m);
                        delivered += 1;
                    }
                    let next =
                        c.nodes.values().filter(|n| n.up).map(|n| n.raft.next_deadline()).min();
                    let Some(next) = next.filter(|&t| t <= end) else { break };
                    c.now = c.now.max(next);
                    let now = c.now;
                    let due: Vec<NodeId> = c
                        .nodes
                        .iter()
                        .filter(|(_, n)| n.up && n.raft.next_deadline() <= now)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in due {
                        c.raft(id).tick(now);
                        c.process(id);
                    }
                }
                c.now = c.now.max(end);
                c.trace = Some(Vec::new());
                writeln!(out, "now={}", c.now).unwrap();
            }
            "elapse" => {
                let ms: u64 = args.first().ok_or("elapse MS")?.parse().map_err(err)?;
                let c = self.c();
                c.now = c.now.saturating_add_ms(ms);
                writeln!(out, "now={}", c.now).unwrap();
            }
            "deliver" | "drop" => {
                let c = self.c();
                let (picked, rest): (Vec<Message>, Vec<Message>) =
                    std::mem::take(&mut c.mailbox).into_iter().partition(|m| matches(m, args));
                c.mailbox = rest;
                for m in picked {
                    if *cmd == "drop" {
                        writeln!(out, "dropped {m}").unwrap();
                        continue;
                    }
                    writeln!(out, "{m}").unwrap();
                    c.deliver(m);
                    flush(c, &mut out, "  ");
                }
            }
            "stabilize" => {
                let c = self.c();
                let mut n = 0;
                while !c.mailbox.is_empty() {
                    let m = c.mailbox.remove(0);
                    writeln!(out, "{m}").unwrap();
                    c.deliver(m);
                    flush(c, &mut out, "  ");
                    n += 1;
                    if n >= STABILIZE_MAX {
                        return Err(format!("not stable after {STABILIZE_MAX} messages"));
                    }
                }
            }
            "propose" => {
                let id = node(args.first())?;
                let text = args.get(1..).map(|a| a.join(" ")).unwrap_or_default();
                match self.c().propose(id, text.as_bytes()) {
                    Ok((index, term)) => writeln!(out, "proposed at t{term}/i{index}").unwrap(),
                    Err(e) => writeln!(out, "refused: {e:?}").unwrap(),
                }
            }
            "read" => {
                let id = node(args.first())?;
                let rid: u64 = args.get(1).ok_or("read ID READ_ID")?.parse().map_err(err)?;
                if let Err(e) = self.c().read(id, ReadId(rid)) {
                    writeln!(out, "refused: {e:?}").unwrap();
                }
            }
            "transfer" => {
                let id = node(args.first())?;
                let target = node(args.get(1))?;
                let c = self.c();
                let now = c.now;
                if let Err(e) = c.raft(id).transfer_leadership(now, target) {
                    writeln!(out, "refused: {e:?}").unwrap();
                }
                c.process(id);
            }
            "change" => {
                let id = node(args.first())?;
                let who = node(args.get(2))?;
                let change = match args.get(1).copied() {
                    Some("add") => {
                        MembershipChange::AddLearner { id: who, address: format!("n{who}") }
                    }
                    Some("promote") => MembershipChange::PromoteLearner { id: who },
                    Some("remove") => MembershipChange::Remove { id: who },
                    other => return Err(format!("change ID add|promote|remove N, not {other:?}")),
                };
                let c = self.c();
                let now = c.now;
                match c.raft(id).propose_membership(now, change) {
                    Ok(index) => writeln!(out, "proposed at i{index}").unwrap(),
                    Err(e) => writeln!(out, "refused: {e:?}").unwrap(),
                }
                c.process(id);
            }
            "crash" => {
                let id = node(args.first())?;
                let c = self.c();
                c.crash(id);
                c.mailbox.retain(|m| m.from != id && m.to != id);
            }
            "restart" => {
                let id = node(args.first())?;
                self.c().restart(id);
            }
            "compact" => {
                let id = node(args.first())?;
                let c = self.c();
                c.compact(id);
                let meta = c.node(id).raft.log().snapshot_meta().clone();
                writeln!(out, "snapshot t{}/i{}", meta.last_term, meta.last_index).unwrap();
            }
            "partition" => {
                let a = ids(args.first())?;
                let b = ids(args.get(1))?;
                self.c().partition(&a, &b);
            }
            "heal" => self.c().heal(),
            "reads" => {
                let id = node(args.first())?;
                let n = self.c().node(id);
                for (rid, index) in &n.reads_done {
                    writeln!(out, "read id={} answered at index {index}", rid.0).unwrap();
                }
                for w in &n.reads_waiting {
                    writeln!(out, "read id={} waits to apply index {}", w.id.0, w.index).unwrap();
                }
                for rid in &n.reads_aborted {
                    writeln!(out, "read id={} aborted", rid.0).unwrap();
                }
            }
            "mailbox" => {
                for m in &self.c().mailbox {
                    writeln!(out, "{m}").unwrap();
                }
            }
            "status" => {
                for (id, n) in &self.c().nodes {
                    if !n.up {
                        writeln!(out, "{id}: down").unwrap();
                        continue;
                    }
                    let r = &n.raft;
                    let lead = r.leader_id().map_or("-".to_string(), |l| l.to_string());
                    writeln!(
                        out,
                        "{id}: {:?} term={} lead={lead} commit={} applied={} snapshot=i{} last=i{} \
                         {}{}",
                        r.role(),
                        r.term(),
                        r.commit_index(),
                        r.last_applied(),
                        r.log().snapshot_meta().last_index,
                        r.log().last_index(),
                        r.membership(),
                        if r.removed() { " removed" } else { "" }
                    )
                    .unwrap();
                }
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        if let Some(c) = self.cluster.as_mut() {
            flush(c, &mut out, "");
        }
        Ok(out)
    }
}

/// Moves the Ready trace into the output.
fn flush(c: &mut Cluster, out: &mut String, indent: &str) {
    for line in c.trace.as_mut().map(std::mem::take).unwrap_or_default() {
        writeln!(out, "{indent}{line}").unwrap();
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn kv<'a>(args: &[&'a str], key: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn node(arg: Option<&&str>) -> Result<NodeId, String> {
    let a = arg.ok_or("a node id is missing")?;
    a.parse().map(NodeId).map_err(|e| format!("node id {a:?}: {e}"))
}

fn ids(arg: Option<&&str>) -> Result<Vec<NodeId>, String> {
    let a = arg.ok_or("a list of node ids is missing")?;
    a.split(',').map(|x| node(Some(&x))).collect()
}

/// Whether `m` matches the `from=`, `to=` and `type=` filters.
fn matches(m: &Message, args: &[&str]) -> bool {
    let text = m.to_string();
    let kind = text.split_whitespace().nth(2).unwrap_or("");
    kv(args, "from").is_none_or(|f| f == m.from.to_string())
        && kv(args, "to").is_none_or(|t| t == m.to.to_string())
        && kv(args, "type").is_none_or(|t| t == kind)
}

/// One block of a transcript file: the comment lines before it, the command, the output.
struct Block {
    comments: Vec<String>,
    command: String,
    output: String,
}

fn parse(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    let mut comments = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            comments.push(line.to_string());
            continue;
        }
        let command = line.to_string();
        match lines.next() {
            Some((_, "----")) => {}
            _ => return Err(format!("line {}: `----` expected after `{command}`", n + 2)),
        }
        let mut output = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.is_empty() {
                break;
            }
            output.push_str(l);
            output.push('\n');
            lines.next();
        }
        blocks.push(Block { comments: std::mem::take(&mut comments), command, output });
    }
    Ok(blocks)
}

fn render(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        for c in &b.comments {
            s.push_str(c);
            s.push('\n');
        }
        s.push_str(&b.command);
        s.push_str("\n----\n");
        s.push_str(&b.output);
    }
    s
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let rewrite = std::env::var("TRANSCRIPT_REWRITE").is_ok_and(|v| v == "1");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("core/testdata exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut blocks = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut env = Env { cluster: None };
        for b in &mut blocks {
            let got = match env.run(&b.command) {
                Ok(out) => out,
                Err(e) => format!("error: {e}\n"),
            };
            if got != b.output {
                if !rewrite {
                    failures.push(format!(
                        "{}: `{}`\n--- expected\n{}--- got\n{}",
                        path.display(),
                        b.command,
                        b.output,
                        got
                    ));
                }
                b.output = got;
            }
        }
        if rewrite {
            std::fs::write(path, render(&blocks)).unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "{} transcript block(s) differ (TRANSCRIPT_REWRITE=1 rewrites the files; review the \
         diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// The runner itself: a file round-trips through parse and render unchanged, and a block whose
// output differs is reported.
#[test]
fn transcript_format_round_trips() {
    let text = "# a comment\ncluster voters=1\n----\n\nstatus\n----\n1: x\n2: y\n";
    let blocks = parse(text).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].output, "1: x\n2: y\n");
    assert_eq!(render(&blocks), text);
    let mut env = Env { cluster: None };
    env.run("cluster voters=1").unwrap();
    let out = env.run("status").unwrap();
    assert!(out.starts_with("1: Follower term=0"), "{out}");
    assert!(env.run("bogus").is_err());
}
