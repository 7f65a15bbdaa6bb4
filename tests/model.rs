use citypulse::model::*;
use std::path::Path;

#[test]
#[ignore]
fn tune() {
    let data = Path::new("../shared/data/routing/routing_train_segmented.tsv");
    let out = std::env::temp_dir().join("citypulse_tune.json");
    let mut o = TrainOptions::new(data, &out);
    o.folds = std::env::var("FOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    o.alpha = std::env::var("ALPHA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.1);
    o.max_iterations = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let r = train_category_model(&o).expect("train");
    println!("{r}");
}
