//! Fuzzes the JetStream API request handling: the first input byte picks a
//! `$JS.API.*` subject (or an ack / a stream publish), the rest is the request
//! body, handed to `JetStream::on_publish` as a client's publish would be.
//! Streams and consumers the fuzzer manages to create live on (in a
//! temporary directory) and are deleted when there are more than 8, so
//! later inputs act on a server with state. Only checks that nothing panics
//! or hangs.
#![no_main]

use std::sync::{Arc, OnceLock, Weak};

use bus_embedded_server::jetstream::{JetStream, JetStreamConfig, Router};
use libfuzzer_sys::fuzz_target;

struct Null;

impl Router for Null {
    fn route(&self, _: &str, _: Option<&str>, _: &[u8], _: &[u8]) -> usize {
        1
    }
    fn route_as(&self, _: &str, _: &str, _: Option<&str>, _: &[u8], _: &[u8]) -> usize {
        1
    }
    fn has_interest(&self, _: &str) -> bool {
        true
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    js: Arc<JetStream>,
    _router: Arc<dyn Router>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("bus-js-api-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let js = rt.block_on(async {
            JetStream::open(JetStreamConfig {
                store_dir: dir,
                ..JetStreamConfig::default()
            })
            .expect("open JetStream")
        });
        let router: Arc<dyn Router> = Arc::new(Null);
        js.set_router(Arc::downgrade(&router) as Weak<dyn Router>);
        World {
            rt,
            js,
            _router: router,
        }
    })
}

const SUBJECTS: &[&str] = &[
    "$JS.API.INFO",
    "$JS.API.STREAM.CREATE.S",
    "$JS.API.STREAM.CREATE.T",
    "$JS.API.STREAM.UPDATE.S",
    "$JS.API.STREAM.INFO.S",
    "$JS.API.STREAM.DELETE.S",
    "$JS.API.STREAM.PURGE.S",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.S",
    "$JS.API.STREAM.MSG.DELETE.S",
    "$JS.API.DIRECT.GET.S",
    "$JS.API.DIRECT.GET.S.s.a",
    "$JS.API.CONSUMER.CREATE.S",
    "$JS.API.CONSUMER.CREATE.S.C",
    "$JS.API.CONSUMER.CREATE.S.C.s.>",
    "$JS.API.CONSUMER.DURABLE.CREATE.S.C",
    "$JS.API.CONSUMER.INFO.S.C",
    "$JS.API.CONSUMER.DELETE.S.C",
    "$JS.API.CONSUMER.NAMES.S",
    "$JS.API.CONSUMER.LIST.S",
    "$JS.API.CONSUMER.MSG.NEXT.S.C",
    "$JS.ACK.S.C.1.1.1.0.0",
    "$JS.FC.S.C.1",
    "s.a",
    "s.b.c",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let subject = SUBJECTS[pick as usize % SUBJECTS.len()];
    // Optionally a header block: split at the first 0xFF byte.
    let (hdr, body) = match rest.iter().position(|b| *b == 0xFF) {
        Some(i) if pick & 0x80 != 0 => (&rest[..i], &rest[i + 1..]),
        _ => (&b""[..], rest),
    };
    w.rt.block_on(async {
        w.js.on_publish(subject, Some("_INBOX.fuzz"), hdr, body);
        tokio::task::yield_now().await;
    });
    if w.js.all_streams().len() > 8 {
        for s in w.js.all_streams() {
            w.rt.block_on(async {
                w.js.on_publish(
                    &format!("$JS.API.STREAM.DELETE.{}", s.name),
                    Some("_INBOX.fuzz"),
                    b"",
                    b"",
                );
            });
        }
    }
});
