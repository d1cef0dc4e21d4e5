"""The versions of the test bed's components: one place to bump them."""

KUBERNETES = "v1.34.4"
ETCD = "v3.6.4"
KWOK = "v0.7.0"
CRICTL = "v1.34.0"
