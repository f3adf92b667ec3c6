//! The compute node's side of the market, from `serve` flags: its prices and its bid policy
//! (including an outside probe, like Bacalhau's `--job-selection-probe-*`, built by
//! `bacalhau_node::probe`).

use anyhow::{Result, bail};
use bacalhau_compute::BidPolicy;
use bacalhau_model::Prices;

use crate::args::ServeArgs;

/// The node's prices, if any price flag is set.
pub fn prices(args: &ServeArgs) -> Result<Option<Prices>> {
    let all = [
        ("--price-cpu-second", args.price_cpu_second),
        ("--price-memory-gb-second", args.price_memory_gb_second),
        ("--price-gpu-second", args.price_gpu_second),
        ("--price-output-gb", args.price_output_gb),
        ("--min-price", args.min_price),
    ];
    for (flag, v) in all {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            bail!("{flag} must be a number of at least 0");
        }
    }
    if all.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    Ok(Some(Prices {
        cpu_second: args.price_cpu_second.unwrap_or(0.0),
        memory_gb_second: args.price_memory_gb_second.unwrap_or(0.0),
        gpu_second: args.price_gpu_second.unwrap_or(0.0),
        output_gb: args.price_output_gb.unwrap_or(0.0),
        min_price: args.min_price.unwrap_or(0.0),
    }))
}

/// The node's bid policy from its flags.
pub fn bid_policy(args: &ServeArgs) -> Result<BidPolicy> {
    let probe: Option<bacalhau_compute::BidProbe> =
        match (&args.job_selection_probe_exec, &args.job_selection_probe_http) {
            (Some(_), Some(_)) => bail!("give one of --job-selection-probe-exec and --job-selection-probe-http"),
            (Some(cmd), None) => Some(bacalhau_node::probe::exec(cmd)),
            (None, Some(url)) => Some(bacalhau_node::probe::http(url)?),
            (None, None) => None,
        };
    Ok(BidPolicy {
        reject_networked: args.reject_networked_jobs,
        local_inputs_only: args.local_inputs_only,
        probe,
        host_network_refusal: None,
    })
}
