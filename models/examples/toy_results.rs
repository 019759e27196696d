//! The 2-D toy results of docs/results.md: for each toy set, an EDM teacher (MLP, 6000
//! Adam steps), then SiD and SiDA (1000 iterations each, batch 128, lr 1e-3) and SiD²A
//! (500 SiDA iterations from the SiD generator). Prints a markdown table of sliced
//! Wasserstein distances (200 projections, 5000 points) to fresh data samples.
//!
//!     cargo run --release -p scorch-models --example toy_results
use scorch_engine::Generator;
use scorch_models::data::toy2d::Toy;
use scorch_models::sid::toy::*;
use scorch_models::sid::Method;
use std::time::Instant;

fn main() -> scorch_models::Result<()> {
    let n = 5000;
    println!("| toy | data vs data | teacher NFE 35 | generator at init | SiD 1000 it | SiDA 1000 it | SiD²A +500 it | seconds |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, toy) in [
        ("8 Gaussians", Toy::EightGaussians),
        ("25 Gaussians", Toy::TwentyFiveGaussians),
        ("swiss roll", Toy::SwissRoll),
        ("checkerboard", Toy::Checkerboard),
    ] {
        let t0 = Instant::now();
        let teacher = train_toy_teacher(&ToyTeacherConfig { steps: 6000, ..ToyTeacherConfig::new(toy) })?;
        let data = toy_swd(&toy.sample(n, &Generator::new(99))?, toy, 7)?;
        let teach = toy_swd(&teacher_samples(&teacher, n, 18, 5)?, toy, 7)?;
        let mut sid = toy_distiller(&teacher, None, toy_distill_config(Method::Sid), 3)?;
        let init = toy_swd(&generator_samples(&sid, n, 8)?, toy, 7)?;
        run_toy(&mut sid, toy, 1000, 100)?;
        let after_sid = toy_swd(&generator_samples(&sid, n, 8)?, toy, 7)?;
        let mut sida = toy_distiller(&teacher, None, toy_distill_config(Method::Sida), 3)?;
        run_toy(&mut sida, toy, 1000, 200)?;
        let after_sida = toy_swd(&generator_samples(&sida, n, 8)?, toy, 7)?;
        // SiD²A: generator from the SiD EMA generator, fake score from the teacher.
        sid.ema().swap()?;
        let mut sid2a = toy_distiller(&teacher, Some(&sid.generator), toy_distill_config(Method::Sida), 4)?;
        sid.ema().swap()?;
        run_toy(&mut sid2a, toy, 500, 300)?;
        let after_sid2a = toy_swd(&generator_samples(&sid2a, n, 8)?, toy, 7)?;
        println!(
            "| {name} | {data:.4} | {teach:.4} | {init:.4} | {after_sid:.4} | {after_sida:.4} | {after_sid2a:.4} | {:.0} |",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
