//! Layout detection on sample texts of each kind of machine.

use super::*;

/// This machine's kind: v1 controllers, and a v2 mount with none of them.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/fc0ba2c9
1:cpu,cpuacct:/
0::/
";
/// A v2-only distribution, the server a systemd service.
const V2_MOUNTINFO: &str = "\
24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
const V2_CGROUP: &str = "0::/system.slice/scriptorium.service\n";

#[test]
fn hybrid_uses_the_v1_memory_and_pids_hierarchies_at_the_servers_own_cgroup() {
    let layout = find_layout(HYBRID_MOUNTINFO, HYBRID_CGROUP, |_| Some("hugetlb".into())).unwrap();
    assert_eq!(
        layout,
        Layout::V1 {
            memory: "/sys/fs/cgroup/memory/process_api/fc0ba2c9".into(),
            pids: Some("/sys/fs/cgroup/pids".into()),
            cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
        }
    );
}

#[test]
fn v2_only_uses_the_servers_unified_cgroup_when_it_offers_memory_and_pids() {
    let seen = std::cell::RefCell::new(Vec::new());
    let layout = find_layout(V2_MOUNTINFO, V2_CGROUP, |d| {
        seen.borrow_mut().push(d.to_path_buf());
        Some("cpuset cpu io memory hugetlb pids rdma misc\n".into())
    })
    .unwrap();
    assert_eq!(
        layout,
        Layout::V2 {
            own: "/sys/fs/cgroup/system.slice/scriptorium.service".into()
        }
    );
    assert_eq!(
        seen.into_inner(),
        [PathBuf::from(
            "/sys/fs/cgroup/system.slice/scriptorium.service"
        )]
    );
}

#[test]
fn v2_without_the_controllers_and_no_v1_says_why() {
    let err = find_layout(V2_MOUNTINFO, V2_CGROUP, |_| Some("cpu io".into())).unwrap_err();
    assert!(
        err.contains("no memory and pids controllers") && err.contains("scriptorium.service"),
        "{err}"
    );
    let err = find_layout("", "", |_| None).unwrap_err();
    assert!(err.contains("no memory cgroup controller"), "{err}");
}

#[test]
fn a_bind_mounted_hierarchy_resolves_below_its_root() {
    // A container without a cgroup namespace: the host's /docker/abc is mounted.
    let mi = "50 40 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n";
    let cg = "4:memory:/docker/abc/inner\n";
    assert_eq!(
        find_layout(mi, cg, |_| None).unwrap(),
        Layout::V1 {
            memory: "/sys/fs/cgroup/memory/inner".into(),
            pids: None,
            cpu: None,
        }
    );
}

#[test]
fn escaped_mount_points_and_combined_controllers_parse() {
    let mi = "60 31 0:29 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,cpu,cpuacct\n";
    let m = parse_mountinfo(mi);
    assert_eq!(m[0].mountpoint, PathBuf::from("/sys/fs/cgroup/with space"));
    assert_eq!(m[0].options, ["rw", "cpu", "cpuacct"]);
    assert_eq!(
        parse_self_cgroup("1:cpu,cpuacct:/a:b\n"),
        [(
            vec!["cpu".to_string(), "cpuacct".to_string()],
            PathBuf::from("/a:b")
        )]
    );
}

#[test]
fn counters_are_read_by_key() {
    assert_eq!(
        parse_counter("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
        3
    );
    assert_eq!(
        parse_counter(
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
            "max"
        ),
        12
    );
    assert_eq!(parse_counter("max 0\n", "oom_kill"), 0);
}
