//! What sealing an audit record adds to linking it: the chain's SHA-256
//! over a decision record's canonical text (about 1 KB, as the enforce
//! benchmark's records are), beside the seal's HMAC over the chain, the
//! sequence and that hash, and its check, which every verification and
//! everything derived from a record pays.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::audit_chain::{link_hash, GENESIS};
use warden_core::secret::MasterKey;
use warden_core::Environment;

fn canonical_record() -> String {
    let args: String = (0..24)
        .map(|i| format!("\"field_{i}\":\"value {i}\","))
        .collect();
    format!(
        "{{\"id\":\"aud_01JX0000000000000000000000\",\"kind\":\"decision\",\"at\":1765140000000,\
         \"agent_id\":\"agt_01JX0000000000000000000000\",\"tool\":\"crm.contacts.read\",\
         \"arguments\":{{{}\"end\":true}},\"decision\":\"allow\",\"reason\":\"matched policy\",\
         \"matched_policy_ids\":[\"pol_01JX0000000000000000000000\"],\"drift\":{{\"score\":0.12}}}}",
        args
    )
}

fn bench(c: &mut Criterion) {
    let text = canonical_record();
    let sealer = MasterKey::generate().chain_sealer();
    let hash = link_hash(GENESIS, 42, text.as_bytes());
    let seal = sealer.seal(
        "org_01JX0000000000000000000000",
        Environment::Live,
        42,
        &hash,
    );
    let mut group = c.benchmark_group(format!("audit_record_{}_bytes", text.len()));
    group.bench_function("link_hash", |b| {
        b.iter(|| {
            link_hash(
                black_box(GENESIS),
                black_box(42),
                black_box(text.as_bytes()),
            )
        })
    });
    group.bench_function("seal", |b| {
        b.iter(|| {
            sealer.seal(
                black_box("org_01JX0000000000000000000000"),
                Environment::Live,
                black_box(42),
                black_box(&hash),
            )
        })
    });
    group.bench_function("check_seal", |b| {
        b.iter(|| {
            sealer.vouches(
                black_box("org_01JX0000000000000000000000"),
                Environment::Live,
                black_box(42),
                black_box(&hash),
                black_box(&seal),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
