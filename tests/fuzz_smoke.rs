//! The fuzz targets' bodies (`rookery::ws::fuzz`) over their corpus and
//! a seeded stream of mutated inputs, on stable: the short lane of
//! `fuzz/` that runs with every test run. The long runs use cargo fuzz
//! (see fuzz/Cargo.toml).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs per target beyond the corpus.
const INPUTS: usize = 200_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{dir}: {err}"))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{dir} is empty");
    inputs
}

/// A corpus input with a few bytes flipped, inserted, cut or repeated:
/// what a fuzzer tries first.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\\u0000",
        b"\\ud800",
        b"1e999",
        b"-0",
        b"\"type\"",
        b"\"ref\"",
        b"null",
        b"\xff",
        b"\xc3",
        b"\x7f",
        b"\x81\xff",
    ];
    let mut input = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=input.len());
        match rng.random_range(0..5) {
            0 if !input.is_empty() => {
                let at = at.min(input.len() - 1);
                input[at] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let piece = INTERESTING[rng.random_range(0..INTERESTING.len())];
                input.splice(at..at, piece.iter().copied());
            }
            2 if at < input.len() => {
                let end = rng.random_range(at..=input.len());
                input.drain(at..end);
            }
            3 => {
                let piece = input[at..].iter().take(16).copied().collect::<Vec<_>>();
                input.splice(at..at, piece);
            }
            _ => input.insert(at, rng.random()),
        }
    }
    input
}

fn run(target: &str, body: fn(&[u8])) {
    let seeds = corpus(target);
    let mut rng = StdRng::seed_from_u64(20261202);
    for seed in &seeds {
        body(seed);
    }
    for _ in 0..INPUTS {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, seed);
        body(&input);
    }
}

#[test]
fn frames_from_the_corpus_and_their_mutations() {
    run("frame", rookery::ws::fuzz::frame);
}

#[test]
fn byte_streams_from_the_corpus_and_their_mutations() {
    run("stream", rookery::ws::fuzz::stream);
}
