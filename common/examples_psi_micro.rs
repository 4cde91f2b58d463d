use std::time::Instant;
use tessera_common::psi::*;
fn main() {
    let ids: Vec<String> = (0..100_000).map(|i| format!("CUST{i:010}")).collect();
    let k = PsiKey::random();
    let t = Instant::now();
    let e = blind_ids(&k, &ids);
    println!("blind 100k: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let _f = reblind(&k, &e).unwrap();
    println!("reblind 100k: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let pts: Vec<_> = ids[..20000].iter().map(|i| hash_id(i)).collect();
    println!("hash 20k 1 thread: {:.2} us/op", t.elapsed().as_secs_f64()*1e6/20000.0);
}
