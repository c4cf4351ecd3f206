//! `lincheck`: checks a Jepsen history file for linearizability.
//!
//! ```text
//! lincheck [--steps-max N] etcd-register FILE
//! lincheck [--steps-max N] jepsen-kv FILE
//! ```
//!
//! Prints one word on stdout and exits with a code to match:
//!
//! | stdout | exit | meaning |
//! |---|---|---|
//! | `linearizable` | 0 | the history is linearizable |
//! | `not linearizable` | 1 | it is not; stderr names the operation the search got stuck on |
//! | (nothing) | 2 | bad arguments, or the file cannot be read or parsed (message on stderr) |
//! | `unknown` | 3 | the search ran out of its step budget before deciding |

use std::process::ExitCode;

use simple_cache_sim::lincheck::{
    Budget, CheckResult, History, KvModel, Model, RegisterModel, Verdict, check, check_partitions,
    parse_etcd_log, parse_jepsen_kv, partition,
};

const USAGE: &str = "\
usage: lincheck [--steps-max N] <FORMAT> <FILE>

Checks a Jepsen history for linearizability.

formats:
  etcd-register   Jepsen etcd log: one compare-and-set register
  jepsen-kv       Jepsen kv EDN lines: get/put/append, checked key by key

options:
  --steps-max N   give up after N search steps (default 10000000)
  -h, --help      print this help

exit status: 0 linearizable, 1 not linearizable, 2 bad arguments or input, 3 unknown (the step
budget ran out)";

const EXIT_NOT_LINEARIZABLE: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;

enum Format {
    EtcdRegister,
    JepsenKv,
}

struct Args {
    format: Format,
    path: String,
    budget: Budget,
}

/// `Ok(None)` means help was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut budget = Budget::default();
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--steps-max" => {
                let value = args.next().ok_or("--steps-max needs a value")?;
                let steps = value
                    .parse()
                    .map_err(|_| format!("--steps-max: not a step count: {value:?}"))?;
                budget = Budget::steps(steps);
            }
            flag if flag.starts_with('-') && flag != "-" => {
                return Err(format!("unknown option {flag}"));
            }
            _ => positional.push(arg),
        }
    }
    let [format, path] = <[String; 2]>::try_from(positional)
        .map_err(|found| format!("expected FORMAT and FILE, found {} arguments", found.len()))?;
    let format = match format.as_str() {
        "etcd-register" => Format::EtcdRegister,
        "jepsen-kv" => Format::JepsenKv,
        other => return Err(format!("unknown format {other:?}")),
    };
    Ok(Some(Args { format, path, budget }))
}

/// Explains a non-linearizable verdict on stderr, naming the stuck operation by its line.
fn explain<M: Model>(result: &CheckResult, partitions: &[History<M::Input, M::Output>])
where
    M::Input: std::fmt::Debug,
    M::Output: std::fmt::Debug,
{
    let stuck = result.partition.zip(result.stuck_op).map(|(part, op)| &partitions[part].ops()[op]);
    if let Some(op) = stuck {
        eprintln!(
            "no linearization gets past the operation of process {} invoked on line {} ({:?}, returned {:?} on line {})",
            op.client,
            op.call,
            op.input,
            op.output,
            op.ret.map_or_else(|| "?".to_owned(), |ret| ret.to_string()),
        );
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.path)
        .map_err(|error| format!("cannot read {}: {error}", args.path))?;
    let bad_input = |error| format!("{}: {error}", args.path);
    let result = match args.format {
        Format::EtcdRegister => {
            let history = parse_etcd_log(&text).map_err(bad_input)?;
            let result = check(&RegisterModel, &history, args.budget);
            explain::<RegisterModel>(&result, std::slice::from_ref(&history));
            result
        }
        Format::JepsenKv => {
            let history = parse_jepsen_kv(&text).map_err(bad_input)?;
            let partitions = partition(history, |input| input.key.clone());
            let result = check_partitions(&KvModel, &partitions, args.budget);
            explain::<KvModel>(&result, &partitions);
            result
        }
    };
    Ok(match result.verdict {
        Verdict::Linearizable => {
            println!("linearizable");
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable => {
            println!("not linearizable");
            ExitCode::from(EXIT_NOT_LINEARIZABLE)
        }
        Verdict::Unknown => {
            println!("unknown");
            eprintln!("gave up after {} search steps", result.steps);
            ExitCode::from(EXIT_UNKNOWN)
        }
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("lincheck: {message}\n\n{USAGE}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    run(args).unwrap_or_else(|message| {
        eprintln!("lincheck: {message}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}
