//! `nnc lsp` driven over stdio with JSON-RPC, as an editor drives it: initialize,
//! didOpen, didChange, hover, completion, definition, formatting, shutdown.

#[path = "support/lsp_client.rs"]
mod lsp_client;

use lsp_client::Client;
use serde_json::{json, Value};

/// The UTF-16 position of the first `needle` in `text`, as the protocol counts.
/// `\z` at the end of `needle` stands for the end of the text.
fn position(text: &str, needle: &str) -> Value {
    let at = match needle.strip_suffix("\\z") {
        Some(tail) if text.ends_with(tail) => text.len() - tail.len(),
        _ => text.find(needle).unwrap_or_else(|| panic!("no {needle:?}")),
    };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    json!({
        "line": text[..at].matches('\n').count(),
        "character": text[line_start..at].encode_utf16().count(),
    })
}

fn labels(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .map(|i| i["label"].as_str().unwrap().to_string())
        .collect()
}

struct Session {
    client: Client,
    uri: String,
    version: i64,
}

impl Session {
    fn open(dir: &std::path::Path, text: &str) -> Session {
        let mut client = Client::start();
        let init = client.request("initialize", json!({ "capabilities": {} }));
        let caps = &init["result"]["capabilities"];
        assert_eq!(caps["hoverProvider"], true, "{init}");
        assert_eq!(caps["definitionProvider"], true);
        assert_eq!(caps["documentFormattingProvider"], true);
        assert_eq!(caps["positionEncoding"], "utf-16");
        client.notify("initialized", json!({}));
        let uri = format!("file://{}/model%20one.nn", dir.display());
        client.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "nn", "version": 1, "text": text } }),
        );
        Session {
            client,
            uri,
            version: 1,
        }
    }

    fn change(&mut self, text: &str) -> Value {
        self.version += 1;
        self.client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": self.uri, "version": self.version },
                "contentChanges": [{ "text": text }],
            }),
        );
        self.client.diagnostics()
    }

    fn at(&mut self, method: &str, text: &str, needle: &str) -> Value {
        let response = self.client.request(
            method,
            json!({ "textDocument": { "uri": self.uri }, "position": position(text, needle) }),
        );
        assert!(response.get("error").is_none(), "{response}");
        response["result"].clone()
    }
}

#[test]
fn diagnostics_on_open_and_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.csv"), "a,y\n1,0\n").unwrap();
    // The emoji takes two UTF-16 units: the second error's column counts them.
    let broken = "model m {\n    input x: [3]\n    h = dens(4)\n    dense(\"😀\", activatoin = relu)\n}\n\
                  train {\n    data = csv(\"missing.csv\", target = \"y\")\n    loss = mse\n    optimizer = adam\n}\n";
    let mut s = Session::open(dir.path(), broken);
    let published = s.client.diagnostics();
    assert_eq!(published["uri"], s.uri);
    let diags = published["diagnostics"].as_array().unwrap().clone();
    let find = |code: &str| {
        diags
            .iter()
            .find(|d| d["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {diags:?}"))
            .clone()
    };
    let unknown_layer = find("E0006");
    assert_eq!(unknown_layer["range"]["start"], position(broken, "dens("));
    assert_eq!(unknown_layer["severity"], 1);
    assert_eq!(unknown_layer["source"], "nnc");
    assert!(
        unknown_layer["message"]
            .as_str()
            .unwrap()
            .contains("help: did you mean `dense`?"),
        "{unknown_layer}"
    );
    assert_eq!(
        find("E0009")["range"]["start"],
        position(broken, "activatoin")
    );
    let missing = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("missing.csv"))
        .unwrap_or_else(|| panic!("no missing-file warning in {diags:?}"));
    assert_eq!(
        missing["range"]["start"],
        position(broken, "\"missing.csv\"")
    );
    assert_eq!(missing["severity"], 2);

    // A duplicated name: the first use comes as related information.
    let twice = "model m {\n    input x: [3]\n    h = dense(4, activation = relu)\n    h = dense(1)\n}\n\
                 train {\n    data = csv(\"rows.csv\", target = \"y\")\n    loss = mse\n    optimizer = adam\n}\n";
    let published = s.change(twice);
    let diags = published["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "E0015");
    assert_eq!(diags[0]["range"]["start"], position(twice, "h = dense(1)"));
    let related = &diags[0]["relatedInformation"][0];
    assert_eq!(related["message"], "first used here");
    assert_eq!(related["location"]["uri"], s.uri);
    assert_eq!(
        related["location"]["range"]["start"],
        position(twice, "h = dense(4")
    );

    let fixed = twice.replace("h = dense(1)", "dense(1)");
    assert_eq!(s.change(&fixed)["diagnostics"], json!([]));
    assert_eq!(s.client.shutdown(), Some(0));
}

const MODEL: &str = "model digits {\n    input pixels: [64]\n    hidden = dense(16, activation = relu)\n    \
                     conv = batchnorm\n    dense(10, activation = softmax)\n}\n\
                     train {\n    loss = sparse_categorical_crossentropy\n    optimizer = adam\n}\n";

#[test]
fn hover_shows_shape_parameters_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::open(dir.path(), MODEL);
    // dense(16) on 64 inputs: 64 * 16 weights + 16 biases, 64 * 16 multiply-adds.
    let hover = s.at("textDocument/hover", MODEL, "dense(16");
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("**hidden** (Dense)"), "{text}");
    assert!(text.contains("Output shape: `(None, 16)`"), "{text}");
    assert!(text.contains("Parameters: 1,040"), "{text}");
    assert!(text.contains("Multiply-adds: 1,024"), "{text}");
    // batchnorm on 16 features: gamma, beta trainable; moving mean and variance not.
    let hover = s.at("textDocument/hover", MODEL, "batchnorm");
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("Parameters: 64 (32 trainable)"), "{text}");
    let hover = s.at("textDocument/hover", MODEL, "pixels");
    assert!(hover["contents"]["value"]
        .as_str()
        .unwrap()
        .contains("`(None, 64)`"));
    assert_eq!(s.at("textDocument/hover", MODEL, "loss"), Value::Null);
    assert_eq!(s.client.shutdown(), Some(0));
}

#[test]
fn completion_offers_what_fits_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let text = "model m {\n    input x: [8, 8, 1]\n    conv2d(4, kernel_size = 3, activation = )\n    \n}\n\
                train {\n    loss = \n    optimizer = adam(\n    metrics = [acc\n}\n";
    let mut s = Session::open(dir.path(), text);
    let activation = labels(&s.at("textDocument/completion", text, ")\n    \n}"));
    assert!(activation.contains(&"relu".to_string()), "{activation:?}");
    assert!(!activation.contains(&"adam".to_string()), "{activation:?}");
    // A statement of the model: layer kinds.
    let layers = labels(&s.at("textDocument/completion", text, "\n}\ntrain"));
    for kind in ["dense", "conv2d", "maxpool2d", "flatten", "dropout"] {
        assert!(layers.contains(&kind.to_string()), "{layers:?}");
    }
    // After `conv2d(`: its argument names.
    let args = s.at("textDocument/completion", text, "4, kernel_size");
    let names = labels(&args);
    assert!(
        names.contains(&"kernel_size".to_string()) && names.contains(&"padding".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"units".to_string()), "{names:?}");
    assert_eq!(args[0]["insertText"], format!("{} = ", names[0]));
    let losses = labels(&s.at("textDocument/completion", text, "\n    optimizer"));
    assert!(
        losses.contains(&"sparse_categorical_crossentropy".to_string()),
        "{losses:?}"
    );
    let adam = labels(&s.at("textDocument/completion", text, "\n    metrics"));
    assert!(
        adam.contains(&"learning_rate".to_string()) && adam.contains(&"beta_1".to_string()),
        "{adam:?}"
    );
    // While typing a name, the completions are those of the place it is typed in.
    let metrics = labels(&s.at("textDocument/completion", text, "\n}\n\\z"));
    assert!(metrics.contains(&"accuracy".to_string()), "{metrics:?}");
    let settings = labels(&s.at("textDocument/completion", text, "loss = "));
    assert!(settings.contains(&"batch_size".to_string()), "{settings:?}");
    assert_eq!(s.client.shutdown(), Some(0));
}

#[test]
fn completion_knows_the_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let text = "model m {\n    input x: [4]\n    dense(1)\n}\ntrain {\n    callbacks = [\n    \
                early_stopping(mode = \n    validation_data = \n}\n";
    let mut s = Session::open(dir.path(), text);
    let callbacks = labels(&s.at("textDocument/completion", text, "\n    early_stopping"));
    assert!(
        callbacks.contains(&"early_stopping".to_string())
            && callbacks.contains(&"csv_logger".to_string()),
        "{callbacks:?}"
    );
    let args = labels(&s.at("textDocument/completion", text, "mode = "));
    assert!(
        args.contains(&"patience".to_string())
            && args.contains(&"restore_best_weights".to_string()),
        "{args:?}"
    );
    let modes = labels(&s.at("textDocument/completion", text, "\n    validation_data"));
    assert_eq!(modes, vec!["auto", "min", "max"]);
    let sources = labels(&s.at("textDocument/completion", text, "\n}\n\\z"));
    assert!(sources.contains(&"csv".to_string()), "{sources:?}");
    assert_eq!(s.client.shutdown(), Some(0));
}

#[test]
fn definition_and_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let text = "model residual {\n    input image: [8]\n  stem=dense(8)\n    branch = dense(8)(stem)\n    add(stem,branch)\n}\n";
    let mut s = Session::open(dir.path(), text);
    let use_at = text.find("(stem)").unwrap() + 1;
    let location = s.client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": s.uri }, "position": position(text, &text[use_at..use_at + 5]) }),
    );
    assert_eq!(location["result"]["uri"], s.uri);
    assert_eq!(
        location["result"]["range"]["start"],
        position(text, "stem=")
    );
    let add_branch = text.rfind("branch").unwrap();
    let location = s.client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": s.uri }, "position": position(text, &text[add_branch..]) }),
    );
    assert_eq!(
        location["result"]["range"]["start"],
        position(text, "branch =")
    );

    // A graph formats like any model: `(INPUT)` right after the call's `)`.
    let format = |s: &mut Session| {
        s.client.request(
            "textDocument/formatting",
            json!({ "textDocument": { "uri": s.uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
        )
    };
    assert_eq!(
        format(&mut s)["result"][0]["newText"],
        "model residual {\n    input image: [8]\n    stem = dense(8)\n    \
         branch = dense(8)(stem)\n    add(stem, branch)\n}\n"
    );
    let messy = "model m {\n  input x: [3]\n  dense(1,activation=sigmoid)}\n";
    s.change(messy);
    let edits = format(&mut s)["result"].clone();
    assert_eq!(
        edits[0]["newText"],
        nnc::syntax::fmt::format(messy).unwrap()
    );
    assert_eq!(
        edits[0]["range"]["start"],
        json!({ "line": 0, "character": 0 })
    );
    assert_eq!(
        edits[0]["range"]["end"],
        json!({ "line": 3, "character": 0 })
    );
    assert_eq!(s.client.shutdown(), Some(0));
}

/// Completion's argument lists follow `sema`: each name it offers is accepted where
/// the call belongs, and a name it does not know is refused there.
#[test]
fn completion_signatures_are_what_check_accepts() {
    use nnc::sema::names;
    let unknown_argument = |src: &str| {
        let o = nnc::check_source(
            "t.nn",
            src.as_bytes(),
            std::path::Path::new(""),
            &Default::default(),
        );
        o.diagnostics.iter().any(|d| d.code == "E0009")
    };
    for (call, params) in nnc::lsp::SIGNATURES {
        for p in *params {
            let src = if names::LAYERS.contains(call) {
                format!("model m {{ input x: [4, 4, 1]\n {call}({p} = 1) }}")
            } else {
                let key = match *call {
                    "split" => "test",
                    c if names::OPTIMIZERS.contains(&c) => "optimizer",
                    _ => "data",
                };
                format!("model m {{ input x: [1] }}\ntrain {{ {key} = {call}({p} = 1) }}")
            };
            assert!(!unknown_argument(&src), "`{call}` does not take `{p}`");
            let bogus = src.replace(&format!("{p} ="), "bogus =");
            assert!(unknown_argument(&bogus), "`{call}` is not checked: {bogus}");
        }
    }
}
