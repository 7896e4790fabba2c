//! Temporary smoke test of the trainer through the library (replaced by .nn end-to-end tests).
use nnc::ir::testing::dense_model;
use nnc::runtime::report::JsonReporter;
use nnc::runtime::train::{train, RunOptions};
use nnc::sema::model::*;

#[test]
fn iris_trains() {
    let mut model = dense_model(
        4,
        &[(16, Activation::Relu), (3, Activation::Softmax)],
        Loss::SparseCategoricalCrossentropy,
        Optimizer::Adam {
            learning_rate: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        },
    );
    let t = model.train.as_mut().unwrap();
    t.data = DataSource::Csv {
        path: "examples/data/iris.csv".into(),
        target: "species".into(),
        features: None,
        standardize: true,
    };
    t.test = Some(TestSource::Split(0.2));
    t.metrics = vec![Metric::Accuracy];
    t.epochs = 50;
    t.batch_size = 16;
    let out = train(
        &model,
        &RunOptions::default(),
        &mut JsonReporter {
            out: &mut std::io::stdout(),
        },
    )
    .unwrap();
    let test = out.test.unwrap();
    eprintln!("{:?}", test.metrics);
    assert!(test.metrics[0].1 > 0.9);
}
