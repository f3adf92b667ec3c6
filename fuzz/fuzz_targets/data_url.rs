//! An inline input's `data:` URL decodes or is refused; it never panics and never yields more
//! than the inline limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for url in [text.to_owned(), format!("data:{text}"), format!("data:application/gzip;base64,{text}")] {
        if let Ok(d) = bacalhau_storage::parse_data_url(&url) {
            assert!(d.bytes.len() <= 8 * 1024 * 1024);
        }
    }
});
