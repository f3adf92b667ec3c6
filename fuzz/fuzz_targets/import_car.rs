//! A malformed CAR file is refused with an error; it never panics, and nothing unverified
//! reaches the sink.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bacalhau_ipfs::import_car(data, &mut |cid, block| {
        assert!(cid.verifies(block), "an unverified block reached the store");
        Ok(())
    });
});
