//! The language server's response time to an edit: `nnc lsp` runs as editors run it
//! (a separate process over stdio), a 200-line model is opened, and each of 300
//! edits is timed from sending `didChange` to receiving its diagnostics (the whole
//! file re-checked). Prints the median, 95th percentile and maximum.
//!
//! `cargo bench --bench lsp` (the server is the bench profile's `nnc`, optimized).

#[path = "../tests/support/lsp_client.rs"]
mod lsp_client;

use std::time::{Duration, Instant};

use serde_json::json;

/// A model of 200 lines: input, 188 layers with a comment every tenth line, and a
/// train block.
fn model(units: usize) -> String {
    let mut text =
        String::from("# benchmark: a deep perceptron\nmodel deep {\n    input x: [64]\n");
    for i in 0..188 {
        let line = match i % 4 {
            0 if i == 8 => format!("    dense({units}, activation = relu)"),
            0 => "    dense(32, activation = relu)".to_string(),
            1 => "    batchnorm".to_string(),
            2 => "    dropout(0.1)".to_string(),
            _ => "    relu".to_string(),
        };
        text += &line;
        text += if i % 10 == 0 { "  # a comment\n" } else { "\n" };
    }
    text += "    dense(10, activation = softmax)\n}\n\ntrain {\n    data      = csv(\"data/digits.csv\", target = \"digit\")\n    loss      = sparse_categorical_crossentropy\n    optimizer = adam(learning_rate = 0.001)\n    epochs    = 3\n}\n";
    text
}

fn main() {
    let mut client = lsp_client::Client::start();
    client.request("initialize", json!({ "capabilities": {} }));
    client.notify("initialized", json!({}));
    // Beside the examples, so that the data path is checked on disk at every change.
    let uri = format!("file://{}/examples/deep.nn", env!("CARGO_MANIFEST_DIR"));
    let text = model(32);
    assert_eq!(text.lines().count(), 200);
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "nn", "version": 1, "text": text } }),
    );
    let first = client.diagnostics();
    assert_eq!(
        first["diagnostics"],
        json!([]),
        "the benchmark model checks clean"
    );
    let mut times: Vec<Duration> = vec![];
    for version in 2..302 {
        let text = model(16 + version % 48);
        let start = Instant::now();
        client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{ "text": text }],
            }),
        );
        let published = client.diagnostics();
        times.push(start.elapsed());
        assert_eq!(published["diagnostics"], json!([]));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "lsp didChange -> diagnostics, 200-line file, {} edits: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(times[times.len() - 1])
    );
    assert_eq!(client.shutdown(), Some(0));
}
