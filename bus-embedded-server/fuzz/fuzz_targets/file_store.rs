//! Fuzzes the file store's decoder and its recovery: the input is decoded
//! record by record with `decode_record` (in the format its segment header
//! says, else the first format; it must never panic and never
//! claim more bytes than it was given), then written as a stream's only
//! segment file and opened with `FileStore::open`, which must either refuse
//! with an error or come up with a consistent state (every message it lists
//! can be read back, within its bounds).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use bus_embedded_server::jetstream::store::file::{
    FileStore, FileStoreConfig, Format, SEGMENT_HEADER_LEN, decode_record, decode_segment_header,
};
use bus_embedded_server::jetstream::store::{Store, SubjectFilter};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| std::env::temp_dir().join(format!("bus-file-store-fuzz-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    // A segment with a header has salted records after it; without one,
    // records of the first format from the start.
    let (format, mut at) = match decode_segment_header(data) {
        Some(salt) => (Format::salted(salt), SEGMENT_HEADER_LEN.min(data.len())),
        None => (Format::V1, 0),
    };
    while at < data.len() {
        match decode_record(&data[at..], format) {
            Ok(Some((_, used))) => {
                assert!(used > 0 && used <= data.len() - at, "decoder overran its input");
                at += used;
            }
            Ok(None) => break,
            Err(e) => {
                let skip = e.skip_len().unwrap_or(1).max(1);
                at += skip;
            }
        }
    }

    let d = dir();
    let _ = std::fs::remove_dir_all(d);
    std::fs::create_dir_all(d).expect("fuzz dir");
    std::fs::write(d.join("00000000000000000001.log"), data).expect("segment");
    if let Ok((mut store, _report)) = FileStore::open(d, FileStoreConfig::default()) {
        let st = store.state();
        assert!(st.msgs <= st.last_seq.saturating_sub(st.first_seq).saturating_add(1) || st.msgs == 0);
        let mut seq = 0;
        let mut seen = 0u64;
        while let Ok(Some(m)) = store.next_from(seq, &SubjectFilter::All) {
            assert!(m.seq >= seq, "sequences go forward");
            seq = m.seq + 1;
            seen += 1;
            if seen > st.msgs {
                panic!("more messages readable than the state counts");
            }
        }
        assert_eq!(seen, st.msgs, "every counted message is readable");
        let _ = store.append("fuzz.after", b"", b"x", 1);
    }
});
