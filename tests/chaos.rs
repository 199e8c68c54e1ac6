//! The chaos suite: a mixed workload with every fault on (transaction
//! conflicts, a throttled partition, lost responses, server errors, failed
//! and redelivered SQS messages, a fan-out instance dying after its work),
//! then every invariant checked. `make test` runs it short; `make chaos`
//! runs it longer (`STOCKROOM_CHAOS_SCALE`) and prints the table.

use stockroom_tests::chaos::{self, Scale};
use stockroom_tests::stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_workload_under_every_fault_keeps_every_invariant() {
    let s = stack().await;
    let seed = std::env::var("STOCKROOM_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let report = chaos::run(&s, Scale::from_env(), seed).await;
    println!("{report}");
    assert!(
        report.faults.values().sum::<u64>() > 0,
        "no fault was injected:\n{report}"
    );
    assert!(
        report.invariants.iter().all(|i| i.checked > 0),
        "an invariant checked nothing:\n{report}"
    );
    assert_eq!(report.violations(), 0, "\n{report}");
}
