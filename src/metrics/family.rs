//! A labelled counter whose children are looked up once.

use std::collections::HashMap;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// A labelled counter family with every child looked up once, at start.
pub struct Family {
    vec: IntCounterVec,
    children: HashMap<&'static str, IntCounter>,
}

impl Family {
    pub(super) fn new(
        registry: &Registry,
        name: &str,
        help: &str,
        label: &str,
        values: &[&'static str],
    ) -> Self {
        let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
        registry
            .register(Box::new(vec.clone()))
            .expect("unique metric");
        let children = values
            .iter()
            .map(|value| (*value, vec.with_label_values(&[value])))
            .collect();
        Self { vec, children }
    }

    pub fn get(&self, value: &str) -> IntCounter {
        match self.children.get(value) {
            Some(child) => child.clone(),
            None => self.vec.with_label_values(&[value]),
        }
    }

    pub fn inc(&self, value: &str) {
        match self.children.get(value) {
            Some(child) => child.inc(),
            None => self.vec.with_label_values(&[value]).inc(),
        }
    }
}
