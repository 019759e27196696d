//! Toy SiD experiment: cargo run --release -p scorch-models --example toy_sid -- [toy] [iters] [lr] [method]
use scorch_models::data::toy2d::Toy;
use scorch_models::sid::toy::*;
use scorch_models::sid::{DistillConfig, Method};
use std::time::Instant;

fn main() -> scorch_models::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let toy = Toy::parse(a.get(1).map(|s| s.as_str()).unwrap_or("8gaussians")).unwrap();
    let iters: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let lr: f64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1e-4);
    let method = a.get(4).map(|s| s.as_str()).unwrap_or("sid");
    let tsteps: usize = a.get(5).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let t0 = Instant::now();
    let mut tc = ToyTeacherConfig::new(toy);
    tc.steps = tsteps;
    let teacher = train_toy_teacher(&tc)?;
    println!("teacher trained in {:.1}s", t0.elapsed().as_secs_f64());
    let ts = teacher_samples(&teacher, 2000, 18, 5)?;
    let data = toy.sample(2000, &scorch_engine::Generator::new(99))?;
    println!("swd data {:.4} teacher {:.4}", toy_swd(&data, toy, 7)?, toy_swd(&ts, toy, 7)?);
    let mut cfg = if method == "sida" { DistillConfig::sida() } else { DistillConfig::sid() };
    cfg.method = if method == "sida" { Method::Sida } else { Method::Sid };
    cfg.batch = 128;
    cfg.batch_gpu = 128;
    cfg.lr_fake = lr;
    cfg.lr_gen = lr;
    cfg.ema_halflife_images = 2000.0;
    cfg.gen_freeze_images = 2560;
    cfg.sid_only_images = 5120;
    let mut d = toy_distiller(&teacher, None, cfg, 3)?;
    let g = generator_samples(&d, 2000, 8)?;
    println!("iter 0 swd gen {:.4}", toy_swd(&g, toy, 7)?);
    let t1 = Instant::now();
    let chunk = (iters / 6).max(1);
    let mut done = 0;
    while done < iters {
        run_toy(&mut d, toy, chunk, 100 + done as u64)?;
        done += chunk;
        let g = generator_samples(&d, 2000, 8)?;
        println!("iter {done} swd gen {:.4}  ({:.1}s)", toy_swd(&g, toy, 7)?, t1.elapsed().as_secs_f64());
    }
    Ok(())
}
