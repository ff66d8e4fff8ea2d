# test list: see CMakeLists.txt for evbus_test()

# Unit tests: one executable per module, cmocka.
evbus_test(test_wire unit 60 SOURCES unit/wire/test_wire.c DEPS evbus_wire)
evbus_test(test_util unit 60 SOURCES unit/common/test_util.c DEPS evbus_common)
evbus_test(test_config unit 60 SOURCES unit/config/test_config.c DEPS evbus_config)
evbus_test(test_envelope unit 60 SOURCES unit/api/test_envelope.c DEPS evbus_api)
evbus_test(test_fsm unit 120 SOURCES unit/cluster/test_fsm.c DEPS evbus_cluster)

# Integration tests: real evbusd processes on 127.0.0.1, driven through the SDK and raw sockets.
evbus_test(test_badinput integration 180 SOURCES integration/test_badinput.c
           DEPS evbus_testsdk evbus_wire)
evbus_test(test_durability integration 300 SOURCES integration/test_durability.c
           DEPS evbus_testsdk PkgConfig::JANSSON)
add_test(NAME test_durability_snapshots
         COMMAND test_durability --snapshot-threshold 16 --snapshot-trailing 16)
set_tests_properties(test_durability_snapshots PROPERTIES LABELS integration TIMEOUT 300
                     ENVIRONMENT "${EVBUS_TEST_ENV}")
evbus_test(test_cli integration 180 SOURCES integration/test_cli.c
           DEPS evbus_testsdk PkgConfig::JANSSON)

# Cluster tests: three or four evbusd nodes on 127.0.0.1, faults by signals to their PIDs.
find_package(Threads REQUIRED)
evbus_test(test_cluster cluster 600 SOURCES cluster/test_cluster.c cluster/cluster_fixture.c
           DEPS evbus_testsdk PkgConfig::JANSSON Threads::Threads)
evbus_test(test_cluster_membership cluster 600
           SOURCES cluster/test_cluster_membership.c cluster/cluster_fixture.c
           DEPS evbus_testsdk PkgConfig::JANSSON Threads::Threads)
evbus_test(test_identity integration 120 SOURCES integration/test_identity.c DEPS evbus_testsdk)
# Rules as replicated state: SDK, evbusctl (test-pattern offline), limits, restart, 3 nodes
# (the cluster fixture starts those).
evbus_test(test_rules integration 300
           SOURCES integration/test_rules.c cluster/cluster_fixture.c
           DEPS evbus_testsdk PkgConfig::JANSSON Threads::Threads)
# Targets as replicated state (issue 5): SDK, evbusctl, restart, 3 nodes.
evbus_test(test_targets integration 300
           SOURCES integration/test_targets.c cluster/cluster_fixture.c
           DEPS evbus_testsdk PkgConfig::JANSSON Threads::Threads)

# Rule engine (rules/): the pattern language against the reference evaluator, and the shared
# event-ruler / quamina fixtures (EVBUS_SHARED_DIR).
evbus_test(test_rules_conformance unit 120 SOURCES unit/rules/test_rules_conformance.c
           DEPS evbus_rules)
evbus_test(test_rules_fixtures unit 120 SOURCES unit/rules/test_rules_fixtures.c
           DEPS evbus_rules PkgConfig::JANSSON)
# The compiled matcher (rules/matcher.c, rules/scan.c): against the reference evaluator.
evbus_test(test_rules_matcher unit 120 SOURCES unit/rules/test_rules_matcher.c
           DEPS evbus_rules PkgConfig::JANSSON)
evbus_test(test_rules_property unit 300 SOURCES unit/rules/test_rules_property.c DEPS evbus_rules)

# Target input shapes (delivery/transform.c): EventBridge's InputPath, Input and InputTransformer.
evbus_test(test_transform unit 60 SOURCES unit/delivery/test_transform.c DEPS evbus_delivery)
