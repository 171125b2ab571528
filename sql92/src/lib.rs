//! RocketMQ SQL92 selector (work in progress).
