//! What the L4 kernel tests share: the fixture configuration and its
//! addresses, loading the program with its maps written as the daemon
//! writes them, and one BPF_PROG_TEST_RUN. Included by `l4_fixtures` and
//! `xdp_fuzz`, each of which uses part of it.
#![allow(dead_code)]

use aya::programs::{TestRun, TestRunOptions};
use edge_userspace::{
    config::{self, Config},
    dataplane::{Dataplane, LoadOptions},
    l4::plan::{self, Plan},
};
use std::{net::IpAddr, path::Path};

/// XDP actions, as BPF_PROG_TEST_RUN returns them.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The client's router (the frame's source MAC).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 1];
/// edge's interface (the frame's destination MAC).
pub const EDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 1];

pub const CLIENT4: [u8; 4] = [192, 0, 2, 10];
pub const CLIENT4B: [u8; 4] = [192, 0, 2, 11];
pub const DENIED4: [u8; 4] = [203, 0, 113, 5];
pub const ROUTER4: [u8; 4] = [198, 51, 100, 1];
pub const VIP4: [u8; 4] = [10, 77, 0, 100];
pub const VIP4_THREE: [u8; 4] = [10, 77, 0, 200];
pub const HOST4: [u8; 4] = [10, 77, 0, 1];
pub const SOURCE4: [u8; 4] = [10, 77, 2, 1];
pub const REAL1: [u8; 4] = [10, 77, 2, 11];
pub const REAL_DNS: [u8; 4] = [10, 77, 2, 12];
pub const THREE: [[u8; 4]; 3] = [[10, 77, 2, 21], [10, 77, 2, 22], [10, 77, 2, 23]];
pub const STICKY: [[u8; 4]; 3] = [[10, 77, 2, 31], [10, 77, 2, 32], [10, 77, 2, 33]];

pub const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
pub const ROUTER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const VIP6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
pub const SOURCE6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const REAL6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];

pub const CONFIG: &str = "
xdp:
  interfaces: [{ name: eth0 }]
  deny: [203.0.113.0/24]
listeners: [{ name: web, address: '0.0.0.0:8080', pool: p }]
pools: [{ name: p, backends: [{ address: '127.0.0.1:9' }] }]
l4:
  forwarding: { source_v4: 10.77.2.1, source_v6: 'fd00:77:2::1' }
  conntrack_capacity: 65536
  services:
    - { name: one, vip: 10.77.0.100, port: 80, maglev_table_size: 7,
        backends: [{ address: 10.77.2.11 }] }
    - { name: dns, vip: 10.77.0.100, port: 53, protocol: udp, hash: source_ip,
        maglev_table_size: 7, backends: [{ address: 10.77.2.12 }] }
    - { name: six, vip: 'fd00:77::100', port: 443, maglev_table_size: 7,
        backends: [{ address: 'fd00:77:2::11' }] }
    - { name: three, vip: 10.77.0.200, port: 80, maglev_table_size: 65537,
        backends: [{ address: 10.77.2.21 }, { address: 10.77.2.22 }, { address: 10.77.2.23 }] }
    - { name: sticky, vip: 10.77.0.200, port: 443, hash: source_ip, maglev_table_size: 65537,
        backends: [{ address: 10.77.2.31 }, { address: 10.77.2.32 }, { address: 10.77.2.33 }] }
";

/// The MAC fixtures give real `addr`: its last address byte in the last
/// MAC byte, so an output frame names its backend twice.
pub fn real_mac(addr: IpAddr) -> [u8; 6] {
    let last = match addr {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    [0x02, 0, 0, 0, 0xbb, last]
}

/// Pins this thread to CPU 0: conntrack is per CPU.
pub fn pin_cpu() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

pub fn config(text: &str) -> Config {
    config::parse(text, Path::new("fixtures.yaml")).expect("fixture config")
}

/// A loaded program with `cfg`'s maps written as the daemon writes them
/// (next hops given: every real reached with XDP_TX).
pub fn dataplane(cfg: &Config) -> (Dataplane, Plan) {
    let mut dp = Dataplane::load_with(&LoadOptions {
        pin: None,
        conntrack_capacity: cfg.l4.conntrack_capacity,
        l4_services: cfg.l4.services.len() as u32,
    })
    .expect("load the XDP object (run as root)");
    dp.tables().set_deny(&cfg.xdp.deny).unwrap();
    dp.tables().set_l7_ports(&cfg.l7_ports()).unwrap();
    let plan =
        plan::plan(&cfg.l4, &Default::default(), edge_common::MAX_L4_SERVICES).expect("plan");
    {
        let mut m = dp.l4();
        m.set_settings(&plan.settings).unwrap();
        for svc in &plan.services {
            for real in &svc.backends {
                let def = plan::real_def(real.address, real_mac(real.address), 0, true);
                m.set_real(real.id, &def).unwrap();
            }
            let ring = svc.ring(&vec![true; svc.backends.len()]);
            m.write_ring(svc.id, 0, &ring).unwrap();
            m.set_vip(&svc.key, &svc.meta(0, plan::PrevTable::NONE))
                .unwrap();
        }
        for marker in &plan.markers {
            m.set_vip(marker, &plan::marker_meta()).unwrap();
        }
    }
    (dp, plan)
}

/// Runs `input` once through `program`; the action and the frame left.
pub fn run_on(program: &mut aya::programs::Xdp, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

pub fn run(dp: &mut Dataplane, input: &[u8]) -> (u32, Vec<u8>) {
    run_on(dp.program().unwrap(), input)
}
