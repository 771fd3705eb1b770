// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AthToken} from "../src/AthToken.sol";
import {LedgerBase} from "../src/LedgerBase.sol";
import {DciLedger} from "../src/DciLedger.sol";
import {DciRegistry, IStakes} from "../src/DciRegistry.sol";
import {TestBase} from "./Vm.sol";

/// The endpoint registry's chain-side rules, one feature per test, with the
/// hostile cases: an unstaked registrant, a replayed or older record,
/// oversized and malformed fields, someone else's node id, a stranger
/// writing. The settler is this contract. (Signatures are 64 opaque bytes
/// here: the contract does not verify them, readers do; dci-chain's tests
/// check that side.)
contract DciRegistryTest is TestBase {
    AthToken token;
    DciLedger ledger;
    DciRegistry registry;
    address constant MINING = address(0x1001);
    address constant LIQUIDITY = address(0x1002);
    address constant STRANGER = address(0x5757);
    uint256 constant HALF = 21_000_000_000 ether;
    bytes32 constant NODE = bytes32(uint256(0xA1));
    bytes32 constant OTHER = bytes32(uint256(0xB2));
    uint64 constant T = 1_700_000_000_000;

    function setUp() public {
        vm.warp(T / 1000);
        address[] memory holders = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (holders[0], holders[1]) = (MINING, LIQUIDITY);
        (amounts[0], amounts[1]) = (HALF, HALF);
        token = new AthToken(holders, amounts);
        LedgerBase.Params memory p =
            LedgerBase.Params(7 days, 900, 10, 8000, 1000, 1000, 9000, 500, 200, 300, 7000, 2000, 1000);
        LedgerBase.Pools memory pools =
            LedgerBase.Pools(MINING, address(0x1003), address(0x1004), address(0x1005), address(0x1006));
        address[] memory committee = new address[](1);
        committee[0] = vm.addr(100);
        ledger = new DciLedger(token, address(this), p, pools, HALF, committee);
        token.bindCustodian(address(ledger));
        registry = new DciRegistry(IStakes(address(ledger)), 1000 ether, 100 ether);
    }

    /// Funds `node`'s account and bonds `amount` in `role`.
    function bond(bytes32 node, uint8 role, uint256 amount) internal {
        address account = registry.accountOf(node);
        ledger.move(LIQUIDITY, account, amount);
        ledger.stake(account, role, amount);
    }

    function sig64() internal pure returns (bytes memory s) {
        s = new bytes(64);
        s[0] = 0x5a;
    }

    function indexer(bytes32 node, uint64 seq, string memory addr) internal pure returns (DciRegistry.Endpoint memory) {
        return DciRegistry.Endpoint(node, 2, seq, bytes32(0), address(0), addr, sig64());
    }

    function checker(bytes32 node, uint64 seq, string memory addr) internal pure returns (DciRegistry.Endpoint memory) {
        return DciRegistry.Endpoint(node, 1, seq, bytes32(uint256(7)), address(0xC4A1), addr, sig64());
    }

    function same(string memory a, string memory b) internal pure returns (bool) {
        return keccak256(bytes(a)) == keccak256(bytes(b));
    }

    /// The registry checks the stake of the same custodial address the
    /// ledger uses for `node:<id>`: this value is dci_chain::account_address
    /// of AccountId::for_node(NodeId([0xab; 32])), computed in Rust
    /// (dci-chain, registry.rs, `the_registry_computes_the_ledgers_account_address`).
    function test_account_of_is_the_ledgers_custodial_address() public view {
        bytes32 node = 0xabababababababababababababababababababababababababababababababab;
        assertTrue(registry.accountOf(node) == 0x4cd6Af7e71715a7111CD8fE4BfDeb042F1F08007, "account address");
    }

    function test_a_staked_indexer_registers_and_a_newer_record_replaces_it() public {
        bond(NODE, 2, 100 ether);
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        assertEq(registry.count(), 1, "listed");
        DciRegistry.Row[] memory rows = registry.page(0, 10);
        assertEq(rows.length, 1, "one row");
        assertEq(rows[0].stake, 100 ether, "with its stake");
        assertTrue(same(rows[0].endpoint.addr, "10.0.0.2:7100"), "its address");
        // It moved: a newer record replaces the old one in place.
        registry.register(indexer(NODE, T + 1, "10.0.0.9:7100"));
        assertEq(registry.count(), 1, "still one");
        assertTrue(same(registry.endpointOf(NODE).addr, "10.0.0.9:7100"), "the new address");
        assertEq(registry.lastSeq(NODE), T + 1, "its sequence");
        // A checker needs the checker minimum in the checker role.
        bond(OTHER, 1, 1000 ether);
        registry.register(checker(OTHER, T, "10.0.0.3:7200"));
        assertEq(registry.count(), 2, "two");
        assertEq(registry.page(1, 10).length, 1, "a page from 1");
        assertEq(registry.page(2, 10).length, 0, "a page past the end");
        assertEq(registry.page(0, 1).length, 1, "a page of one");
    }

    function test_an_unstaked_or_understaked_node_cannot_register() public {
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StakeBelowMinimum.selector, NODE, 2, 0, 100 ether));
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        bond(NODE, 2, 99 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StakeBelowMinimum.selector, NODE, 2, 99 ether, 100 ether));
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        // Stake of another role does not count: container stake is not an indexer's.
        bond(OTHER, 0, 5000 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StakeBelowMinimum.selector, OTHER, 2, 0, 100 ether));
        registry.register(indexer(OTHER, T, "10.0.0.2:7100"));
        // Indexer stake does not seat a checker (whose minimum is higher anyway).
        bond(NODE, 2, 2000 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StakeBelowMinimum.selector, NODE, 1, 0, 1000 ether));
        registry.register(checker(NODE, T, "10.0.0.2:7100"));
        assertEq(registry.count(), 0, "nothing listed");
        assertEq(registry.lastSeq(NODE), 0, "no sequence used");
    }

    /// Someone else's node id: the stake checked is that node's, never the
    /// one of whoever asks, so a staked node cannot register another's id.
    function test_someone_elses_node_id_is_checked_against_that_nodes_stake() public {
        bond(NODE, 2, 100 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StakeBelowMinimum.selector, OTHER, 2, 0, 100 ether));
        registry.register(indexer(OTHER, T, "10.0.0.2:7100"));
    }

    /// Only the settler writes: a stranger cannot register, withdraw, or
    /// burn a node's sequence numbers.
    function test_a_stranger_cannot_write() public {
        bond(NODE, 2, 100 ether);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.NotSettler.selector, STRANGER));
        registry.register(indexer(NODE, type(uint64).max, "6.6.6.6:666"));
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.NotSettler.selector, STRANGER));
        registry.withdraw(NODE, T + 1, sig64());
        assertEq(registry.lastSeq(NODE), T, "the sequence untouched");
        assertEq(registry.count(), 1, "still listed");
    }

    function test_a_replayed_or_older_record_is_refused() public {
        bond(NODE, 2, 100 ether);
        registry.register(indexer(NODE, T + 5, "10.0.0.9:7100"));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StaleSequence.selector, NODE, T + 5, T + 5));
        registry.register(indexer(NODE, T + 5, "10.0.0.9:7100"));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StaleSequence.selector, NODE, T, T + 5));
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        assertTrue(same(registry.endpointOf(NODE).addr, "10.0.0.9:7100"), "the newest kept");
        // Withdrawn, then the old record replayed: refused, the sequence stays.
        registry.withdraw(NODE, T + 6, sig64());
        assertEq(registry.count(), 0, "withdrawn");
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StaleSequence.selector, NODE, T + 5, T + 6));
        registry.register(indexer(NODE, T + 5, "10.0.0.9:7100"));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StaleSequence.selector, NODE, T + 6, T + 6));
        registry.withdraw(NODE, T + 6, sig64());
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.NotListed.selector, NODE));
        registry.withdraw(NODE, T + 7, sig64());
        // A newer one is taken.
        registry.register(indexer(NODE, T + 7, "10.0.0.2:7100"));
        assertEq(registry.count(), 1, "back");
    }

    function test_oversized_and_malformed_fields_are_refused() public {
        bond(NODE, 2, 100 ether);
        bond(OTHER, 1, 1000 ether);
        string memory long = string(new bytes(129));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.BadAddress.selector, 129, 128));
        registry.register(indexer(NODE, T, long));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.BadAddress.selector, 0, 128));
        registry.register(indexer(NODE, T, ""));
        DciRegistry.Endpoint memory e = indexer(NODE, T, "10.0.0.2:7100");
        e.signature = new bytes(65);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.BadSignature.selector, 65, 64));
        registry.register(e);
        e.signature = new bytes(0);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.BadSignature.selector, 0, 64));
        registry.register(e);
        e = indexer(NODE, T, "10.0.0.2:7100");
        for (uint8 role = 0; role < 5; role += 3) {
            e.role = role;
            vm.expectRevert(abi.encodeWithSelector(DciRegistry.InvalidRole.selector, role));
            registry.register(e);
        }
        e = indexer(NODE, T, "10.0.0.2:7100");
        e.vrfPublic = bytes32(uint256(1));
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.IndexerKeys.selector, NODE));
        registry.register(e);
        e = checker(OTHER, T, "10.0.0.3:7200");
        e.chainSigner = address(0);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.CheckerKeys.selector, OTHER));
        registry.register(e);
        e = checker(OTHER, T, "10.0.0.3:7200");
        e.vrfPublic = bytes32(0);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.CheckerKeys.selector, OTHER));
        registry.register(e);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.BadSignature.selector, 63, 64));
        registry.withdraw(NODE, T, new bytes(63));
        assertEq(registry.count(), 0, "nothing listed");
        // The largest address fits.
        registry.register(indexer(NODE, T, string(new bytes(128))));
        assertEq(registry.count(), 1, "128 bytes fit");
    }

    /// A sequence far ahead of the chain's clock is refused: nobody (not even
    /// the settler) can use up a node's sequence numbers for long.
    function test_a_sequence_far_ahead_of_the_chain_clock_is_refused() public {
        bond(NODE, 2, 100 ether);
        uint256 limit = block.timestamp * 1000 + registry.MAX_SEQ_AHEAD_MS();
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.SequenceAhead.selector, NODE, type(uint64).max, limit));
        registry.register(indexer(NODE, type(uint64).max, "6.6.6.6:666"));
        registry.register(indexer(NODE, uint64(limit), "10.0.0.2:7100"));
        assertEq(registry.lastSeq(NODE), limit, "at the limit is fine");
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.SequenceAhead.selector, NODE, uint64(limit + 1), limit));
        registry.withdraw(NODE, uint64(limit + 1), sig64());
        // Once the chain's clock moves on, the node registers again.
        vm.warp(block.timestamp + 1);
        registry.register(indexer(NODE, uint64(limit + 1), "10.0.0.3:7100"));
    }

    /// A node whose stake fell below the minimum is pruned by anyone; a
    /// staked one is not; its sequence survives.
    function test_anyone_prunes_a_node_whose_stake_fell_below_the_minimum() public {
        bond(NODE, 2, 100 ether);
        bond(OTHER, 2, 100 ether);
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        registry.register(indexer(OTHER, T, "10.0.0.3:7100"));
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StillStaked.selector, NODE, 100 ether, 100 ether));
        registry.prune(NODE);
        ledger.unstake(registry.accountOf(NODE), 2, 1 ether, T);
        assertEq(registry.page(0, 10)[0].stake, 99 ether, "readers see the stake drop");
        vm.prank(STRANGER);
        registry.prune(NODE);
        assertEq(registry.count(), 1, "pruned");
        assertTrue(registry.page(0, 10)[0].endpoint.node == OTHER, "the other stays, moved into the gap");
        assertTrue(registry.endpointOf(NODE).node == bytes32(0), "gone");
        assertEq(registry.lastSeq(NODE), T, "its sequence kept");
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.NotListed.selector, NODE));
        registry.prune(NODE);
        // Bonded again, it can come back only with a newer record.
        bond(NODE, 2, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.StaleSequence.selector, NODE, T, T));
        registry.register(indexer(NODE, T, "10.0.0.2:7100"));
        registry.register(indexer(NODE, T + 1, "10.0.0.2:7100"));
    }

    /// At most MAX_ENDPOINTS listed; a full list still takes updates.
    function test_the_list_is_bounded() public {
        uint256 max = registry.MAX_ENDPOINTS();
        for (uint256 i = 1; i <= max; i++) {
            bond(bytes32(i), 2, 100 ether);
            registry.register(indexer(bytes32(i), T, "10.0.0.2:7100"));
        }
        assertEq(registry.count(), max, "full");
        bond(bytes32(max + 1), 2, 100 ether);
        vm.expectRevert(abi.encodeWithSelector(DciRegistry.RegistryFull.selector, max));
        registry.register(indexer(bytes32(max + 1), T, "10.0.0.2:7100"));
        registry.register(indexer(bytes32(uint256(1)), T + 1, "10.0.0.3:7100"));
        uint256 g = gasleft();
        assertEq(registry.page(0, 100).length, 100, "pages of 100");
        emit log_named_uint("page of 100 records (a full registry has 11 pages)", g - gasleft());
    }

    /// Gas of a first registration and of an update (printed with -vv).
    function test_gas_register() public {
        bond(NODE, 1, 1000 ether);
        uint256 g = gasleft();
        registry.register(checker(NODE, T, "203.0.113.77:7200"));
        emit log_named_uint("register, first record of a checker", g - gasleft());
        g = gasleft();
        registry.register(checker(NODE, T + 1, "203.0.113.78:7200"));
        emit log_named_uint("register, a newer record", g - gasleft());
        g = gasleft();
        registry.page(0, 100);
        emit log_named_uint("page of 1 record, with its stake", g - gasleft());
    }
}
