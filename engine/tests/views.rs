//! Views share storage (no copies) and see in-place writes; copies do not.

use scorch_engine::{no_grad, DType, Tensor};

fn arange(n: usize, shape: &[usize]) -> Tensor {
    Tensor::arange(0.0, n as f64, 1.0, DType::F32).unwrap().reshape(shape).unwrap()
}

#[test]
fn views_share_storage_and_copies_do_not() {
    let x = arange(24, &[2, 3, 4]);
    let views = [
        x.reshape(&[6, 4]).unwrap(),
        x.permute(&[2, 0, 1]).unwrap(),
        x.narrow(1, 1, 2).unwrap(),
        x.slice(2, 0, 4, 2).unwrap(),
        x.unsqueeze(0).unwrap(),
        x.narrow(0, 0, 1).unwrap().squeeze(0).unwrap(),
        x.flatten(0, 1).unwrap(),
        x.narrow(1, 0, 1).unwrap().expand(&[2, 5, 4]).unwrap(),
        x.transpose(0, 2).unwrap(),
    ];
    for v in &views {
        assert!(v.same_storage(&x), "{:?} should be a view", v.shape());
    }
    assert!(!x.permute(&[2, 0, 1]).unwrap().contiguous().unwrap().same_storage(&x));
    // A transposed tensor cannot be flattened without a copy.
    let t = x.transpose(0, 2).unwrap();
    assert!(!t.reshape(&[24]).unwrap().same_storage(&x));
    assert_eq!(t.reshape(&[24]).unwrap().to_vec_f32().unwrap()[..4], [0.0, 12.0, 4.0, 16.0]);
    // Writes through a view are seen by the base.
    let v = x.narrow(2, 1, 2).unwrap();
    {
        let _g = no_grad();
        v.fill_(-1.0).unwrap();
    }
    let base = x.to_vec_f32().unwrap();
    assert_eq!(&base[..4], &[0.0, -1.0, -1.0, 3.0]);
    assert!(x.version() > 0);
}

#[test]
fn shape_ops_split_chunk_stack_pad_flip() {
    let x = arange(10, &[2, 5]);
    let parts = x.split(2, 1).unwrap();
    assert_eq!(parts.iter().map(|p| p.shape()[1]).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(x.chunk(2, 1).unwrap().len(), 2);
    let s = Tensor::stack(&[x.clone(), x.clone()], 0).unwrap();
    assert_eq!(s.shape(), &[2, 2, 5]);
    let back = Tensor::cat(&parts, 1).unwrap();
    assert_eq!(back.to_vec_f32().unwrap(), x.to_vec_f32().unwrap());
    let p = x.pad(&[(1, 0), (0, 2)], 9.0).unwrap();
    assert_eq!(p.shape(), &[3, 7]);
    assert_eq!(p.to_vec_f32().unwrap()[..7], [9.0; 7]);
    assert_eq!(x.flip(&[1]).unwrap().to_vec_f32().unwrap()[..5], [4.0, 3.0, 2.0, 1.0, 0.0]);
    let oh = Tensor::from_vec(vec![2i64, 0], &[2]).unwrap().one_hot(3, DType::F32).unwrap();
    assert_eq!(oh.to_vec_f32().unwrap(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    assert!(Tensor::from_vec(vec![3i64], &[1]).unwrap().one_hot(3, DType::F32).is_err());
}

#[test]
fn creation_ops() {
    assert_eq!(
        Tensor::linspace(0.0, 1.0, 5, DType::F64).unwrap().to_vec_f64().unwrap(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(Tensor::eye(2, DType::F32).unwrap().to_vec_f32().unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(Tensor::arange(1.0, 2.0, 0.25, DType::F32).unwrap().numel(), 4);
    assert!(Tensor::arange(0.0, 1.0, 0.0, DType::F32).is_err());
    let g = scorch_engine::Generator::new(3);
    let p = Tensor::full(&[10000], 0.3, DType::F32).unwrap();
    let m = p.bernoulli(&g).unwrap().mean_all().unwrap().item().unwrap();
    assert!((m - 0.3).abs() < 0.02, "{m}");
    let r = Tensor::randint(&[1000], -3, 4, &g).unwrap().to_vec::<i64>().unwrap();
    assert!(r.iter().all(|&v| (-3..4).contains(&v)));
    assert!(r.contains(&-3) && r.contains(&3));
}

#[test]
fn reductions_over_empty_axes() {
    let x = Tensor::zeros(&[3, 0], DType::F32).unwrap();
    let s = x.sum(&[1], false).unwrap();
    assert_eq!(s.shape(), &[3]);
    assert_eq!(s.to_vec_f32().unwrap(), vec![0.0; 3]);
    assert!(x.max(&[1], false).is_err());
    assert!(x.argmax(1, false).is_err());
}
