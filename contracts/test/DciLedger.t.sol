// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AthToken} from "../src/AthToken.sol";
import {LedgerBase} from "../src/LedgerBase.sol";
import {Escrow} from "../src/Escrow.sol";
import {Staking} from "../src/Staking.sol";
import {Rewards} from "../src/Rewards.sol";
import {DciLedger} from "../src/DciLedger.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {TestBase} from "./Vm.sol";

/// The contracts' rules, one feature per test; the settler is this contract.
contract DciLedgerTest is TestBase {
    AthToken token;
    DciLedger ledger;
    address constant MINING = address(0x1001);
    address constant LIQUIDITY = address(0x1002);
    address constant CHECKER_FEES = address(0x1003);
    address constant INDEXER_FEES = address(0x1004);
    address constant TREASURY = address(0x1005);
    address constant SLASHED = address(0x1006);
    address constant ALICE = address(0xA11CE);
    address constant BOB = address(0xB0B);
    uint256 constant HALF = 21_000_000_000 ether;
    uint256 constant T0 = 1_700_000_000;

    function setUp() public {
        vm.warp(T0);
        address[] memory holders = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (holders[0], holders[1]) = (MINING, LIQUIDITY);
        (amounts[0], amounts[1]) = (HALF, HALF);
        token = new AthToken(holders, amounts);
        LedgerBase.Params memory p =
            LedgerBase.Params(7 days, 900, 10, 8000, 1000, 1000, 9000, 500, 200, 300, 7000, 2000, 1000);
        LedgerBase.Pools memory pools = LedgerBase.Pools(MINING, CHECKER_FEES, INDEXER_FEES, TREASURY, SLASHED);
        ledger = new DciLedger(token, address(this), p, pools, HALF);
        token.bindCustodian(address(ledger));
        ledger.move(LIQUIDITY, ALICE, 1000 ether);
        ledger.move(LIQUIDITY, BOB, 1000 ether);
    }

    function nowMs() internal view returns (uint64) {
        return uint64(block.timestamp * 1000);
    }

    function test_genesis_must_mint_exactly_the_supply() public {
        address[] memory holders = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        holders[0] = ALICE;
        amounts[0] = HALF;
        vm.expectRevert(abi.encodeWithSelector(AthToken.SupplyMismatch.selector, 2 * HALF, HALF));
        new AthToken(holders, amounts);
        assertEq(token.totalSupply(), 2 * HALF, "total supply");
    }

    function test_only_the_custodian_moves_and_only_the_settler_asks() public {
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(AthToken.NotCustodian.selector, ALICE));
        token.custodialTransfer(BOB, ALICE, 1);
        vm.expectRevert(abi.encodeWithSelector(AthToken.CustodianAlreadyBound.selector, address(ledger)));
        token.bindCustodian(ALICE);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(LedgerBase.NotSettler.selector, ALICE));
        ledger.move(BOB, ALICE, 1);
    }

    function lock(bytes16 session, address consumer, uint256 amount) internal {
        Escrow.Lock[] memory locks = new Escrow.Lock[](1);
        locks[0] = Escrow.Lock(session, consumer, amount);
        ledger.lockEscrows(ledger.nextSession(), locks);
    }

    function settleOne(uint256 index, address consumer, uint256 escrow, uint256 charged, address payee) internal {
        uint256[] memory close = new uint256[](2);
        (close[0], close[1]) = (index / 256, uint256(1) << (index % 256));
        Escrow.Debit[] memory debits = new Escrow.Debit[](1);
        debits[0] = Escrow.Debit(consumer, escrow, escrow - charged);
        Escrow.Credit[] memory credits = new Escrow.Credit[](1);
        credits[0] = Escrow.Credit(payee, charged);
        ledger.settleNetted(bytes32(uint256(7)), close, new uint256[](0), debits, credits);
    }

    function test_settlement_pays_once_within_the_escrow() public {
        lock(bytes16(uint128(1)), ALICE, 100 ether);
        assertEq(ledger.escrowed(ALICE), 100 ether, "escrowed");
        assertEq(token.balanceOf(ALICE), 900 ether, "alice after lock");
        settleOne(0, ALICE, 100 ether, 60 ether, BOB);
        assertEq(token.balanceOf(BOB), 1060 ether, "bob paid");
        assertEq(token.balanceOf(ALICE), 940 ether, "alice refunded the rest");
        assertEq(ledger.totalEscrowed(), 0, "escrow total");
        // The same session again: refused.
        vm.expectRevert(abi.encodeWithSelector(Escrow.SessionAlreadyClosed.selector, 0, 1));
        settleOne(0, ALICE, 0, 0, BOB);
    }

    function test_settlement_refuses_unknown_sessions_overdrafts_and_leaks() public {
        lock(bytes16(uint128(1)), ALICE, 100 ether);
        vm.expectRevert(abi.encodeWithSelector(Escrow.UnknownSession.selector, 0, 2));
        settleOne(1, ALICE, 100 ether, 1, BOB);
        vm.expectRevert(abi.encodeWithSelector(Escrow.InsufficientEscrow.selector, ALICE, 100 ether, 101 ether));
        settleOne(0, ALICE, 101 ether, 1, BOB);
        // Paying out more than is released is not conserved.
        uint256[] memory close = new uint256[](2);
        (close[0], close[1]) = (0, 1);
        Escrow.Debit[] memory debits = new Escrow.Debit[](1);
        debits[0] = Escrow.Debit(ALICE, 10 ether, 0);
        Escrow.Credit[] memory credits = new Escrow.Credit[](1);
        credits[0] = Escrow.Credit(BOB, 11 ether);
        vm.expectRevert(abi.encodeWithSelector(Escrow.NotConserved.selector, 10 ether, 11 ether));
        ledger.settleNetted(0, close, new uint256[](0), debits, credits);
    }

    function test_a_batch_is_all_or_nothing_and_applies_once() public {
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeCall(DciLedger.move, (ALICE, BOB, 10 ether));
        calls[1] = abi.encodeCall(DciLedger.move, (ALICE, BOB, 0));
        vm.expectRevert(
            abi.encodeWithSelector(
                DciLedger.BatchCallFailed.selector, 1, abi.encodeWithSelector(LedgerBase.ZeroAmount.selector)
            )
        );
        ledger.batch(bytes32(uint256(1)), calls);
        assertEq(token.balanceOf(BOB), 1000 ether, "nothing applied");
        calls[1] = abi.encodeCall(DciLedger.move, (BOB, ALICE, 5 ether));
        ledger.batch(bytes32(uint256(1)), calls);
        assertEq(token.balanceOf(BOB), 1005 ether, "applied");
        vm.expectRevert(abi.encodeWithSelector(DciLedger.BatchAlreadyApplied.selector, bytes32(uint256(1))));
        ledger.batch(bytes32(uint256(1)), calls);
        assertEq(token.balanceOf(BOB), 1005 ether, "applied once");
    }

    function test_stake_leaves_only_through_unbonding() public {
        ledger.stake(ALICE, 0, 100 ether);
        ledger.unstake(ALICE, 0, 40 ether, nowMs());
        assertEq(ledger.staked(ALICE, 0), 60 ether, "staked");
        vm.expectRevert(abi.encodeWithSelector(Staking.NothingToWithdraw.selector, ALICE, nowMs()));
        ledger.withdrawUnbonded(ALICE, nowMs());
        // The settler cannot pretend the period has passed.
        uint64 later = nowMs() + 7 days * 1000;
        vm.expectRevert(abi.encodeWithSelector(LedgerBase.TimeSkew.selector, later, block.timestamp * 1000));
        ledger.withdrawUnbonded(ALICE, later);
        vm.warp(T0 + 7 days);
        ledger.withdrawUnbonded(ALICE, nowMs());
        assertEq(token.balanceOf(ALICE), 940 ether, "withdrawn");
        vm.expectRevert(abi.encodeWithSelector(Staking.InsufficientStake.selector, ALICE, 0, 60 ether, 61 ether));
        ledger.unstake(ALICE, 0, 61 ether, nowMs());
        ledger.checkHoldings();
    }

    function sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, MessageHashUtils.toEthSignedMessageHash(digest));
        return abi.encodePacked(r, s, v);
    }

    function test_slashing_needs_two_thirds_of_the_committee() public {
        ledger.stake(BOB, 1, 500 ether);
        address[] memory members = new address[](3);
        for (uint256 i = 0; i < 3; i++) {
            members[i] = vm.addr(100 + i);
        }
        ledger.setCommittee(4, members);
        bytes32 evidence = keccak256("verdicts");
        bytes32 digest = ledger.slashDigest(BOB, 1, 4, evidence, 30 ether);
        // One member, one member twice, an outsider: not a quorum.
        bytes[] memory sigs = new bytes[](3);
        sigs[0] = sig(100, digest);
        sigs[1] = sig(100, digest);
        sigs[2] = sig(999, digest);
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 1, 2, 3));
        ledger.slash(BOB, 1, 4, evidence, 30 ether, sigs);
        // A signature over another amount does not count either.
        sigs[1] = sig(101, ledger.slashDigest(BOB, 1, 4, evidence, 31 ether));
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 1, 2, 3));
        ledger.slash(BOB, 1, 4, evidence, 30 ether, sigs);
        sigs[1] = sig(101, digest);
        ledger.slash(BOB, 1, 4, evidence, 30 ether, sigs);
        assertEq(ledger.staked(BOB, 1), 470 ether, "stake slashed");
        assertEq(token.balanceOf(SLASHED), 30 ether, "to the slashed pool");
        vm.expectRevert();
        ledger.slash(BOB, 1, 4, evidence, 30 ether, sigs);
        vm.expectRevert(abi.encodeWithSelector(Staking.NoCommittee.selector, 5));
        ledger.slash(BOB, 1, 5, evidence, 30 ether, sigs);
    }

    function test_slashing_takes_rewards_first_then_at_most_the_fraction() public {
        ledger.stake(BOB, 0, 100 ether);
        ledger.unstake(BOB, 0, 100 ether, nowMs());
        address[] memory accounts = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        (accounts[0], amounts[0]) = (BOB, 5 ether);
        ledger.distributeEpoch(0, 5 ether, 0, 0, accounts, amounts);
        address[] memory members = new address[](1);
        members[0] = vm.addr(100);
        ledger.setCommittee(1, members);
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = sig(100, ledger.slashDigest(BOB, 0, 1, bytes32(0), 50 ether));
        ledger.slash(BOB, 0, 1, bytes32(0), 50 ether, sigs);
        // 5 from rewards, then 10% of the 100 bonded (all unbonding).
        assertEq(ledger.pendingRewards(BOB), 0, "rewards taken first");
        assertEq(ledger.totalUnbonding(), 90 ether, "unbonding slashed");
        assertEq(token.balanceOf(SLASHED), 15 ether, "slashed pool");
        ledger.checkHoldings();
    }

    /// Signatures of the committee members with keys 100 and 101 over a report.
    function quorum(address offender, uint8 role, uint64 epoch, bytes32 evidence, uint256 amount)
        internal
        view
        returns (bytes[] memory sigs)
    {
        bytes32 digest = ledger.slashDigest(offender, role, epoch, evidence, amount);
        sigs = new bytes[](2);
        sigs[0] = sig(100, digest);
        sigs[1] = sig(101, digest);
    }

    function test_a_piece_of_evidence_is_slashed_once_even_in_a_later_epoch() public {
        ledger.stake(BOB, 0, 500 ether);
        ledger.stake(BOB, 1, 500 ether);
        address[] memory members = new address[](3);
        for (uint256 i = 0; i < 3; i++) {
            members[i] = vm.addr(100 + i);
        }
        ledger.setCommittee(4, members);
        ledger.setCommittee(5, members);
        bytes32 evidence = keccak256("verdicts");
        ledger.slash(BOB, 1, 4, evidence, 30 ether, quorum(BOB, 1, 4, evidence, 30 ether));
        assertTrue(ledger.slashApplied(evidence), "keyed by the evidence");
        // The same report re-signed by the committee of a later epoch, or
        // the same evidence against another role or for another amount.
        bytes memory refused = abi.encodeWithSelector(Staking.SlashAlreadyApplied.selector, evidence);
        bytes[] memory sigs = quorum(BOB, 1, 5, evidence, 30 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 1, 5, evidence, 30 ether, sigs);
        sigs = quorum(BOB, 0, 5, evidence, 30 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 0, 5, evidence, 30 ether, sigs);
        sigs = quorum(BOB, 1, 4, evidence, 1 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 1, 4, evidence, 1 ether, sigs);
        assertEq(token.balanceOf(SLASHED), 30 ether, "slashed once");
        // New evidence still counts.
        bytes32 other = keccak256("other verdicts");
        ledger.slash(BOB, 1, 5, other, 30 ether, quorum(BOB, 1, 5, other, 30 ether));
        assertEq(token.balanceOf(SLASHED), 60 ether, "new evidence slashed");
        ledger.checkHoldings();
    }

    /// Unbonding released together is taken smallest entry first, whatever
    /// the entries' places in the array (the rule of dci_ledger::rules::slash).
    function test_slashing_takes_unbonding_released_together_smallest_first() public {
        ledger.move(LIQUIDITY, BOB, 500 ether);
        ledger.stake(BOB, 0, 1500 ether);
        ledger.unstake(BOB, 0, 600 ether, nowMs());
        ledger.unstake(BOB, 0, 100 ether, nowMs());
        ledger.unstake(BOB, 0, 300 ether, nowMs());
        ledger.unstake(BOB, 0, 500 ether, nowMs());
        address[] memory members = new address[](3);
        for (uint256 i = 0; i < 3; i++) {
            members[i] = vm.addr(100 + i);
        }
        ledger.setCommittee(1, members);
        ledger.slash(BOB, 0, 1, bytes32(uint256(1)), 1000 ether, quorum(BOB, 0, 1, bytes32(uint256(1)), 1000 ether));
        // 10% of the 1,500 unbonding: the 100 entry whole, then 50 of the 300.
        Staking.Unbonding[] memory left = ledger.unbondingOf(BOB);
        assertEq(left.length, 3, "entries left");
        uint256 found;
        for (uint256 i = 0; i < left.length; i++) {
            if (left[i].amount == 600 ether) found |= 1;
            if (left[i].amount == 250 ether) found |= 2;
            if (left[i].amount == 500 ether) found |= 4;
        }
        assertEq(found, 7, "600, 250 and 500 left");
        assertEq(ledger.totalUnbonding(), 1350 ether, "unbonding slashed");
        ledger.checkHoldings();
    }

    function test_epochs_pay_once_within_the_schedule() public {
        uint256 e0 = ledger.emission(0);
        // Year 0 of a 10-year schedule decaying 20%: ~134,281 ATH per epoch.
        assertTrue(e0 > 134_281 ether && e0 < 134_282 ether, "year 0 emission");
        assertEq(ledger.emission(35_040 * 10), 0, "nothing after the schedule");
        address[] memory accounts = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (accounts[0], accounts[1]) = (ALICE, BOB);
        (amounts[0], amounts[1]) = (e0, 1);
        vm.expectRevert(abi.encodeWithSelector(Rewards.EmissionExceeded.selector, 0, e0, e0 + 1));
        ledger.distributeEpoch(0, e0 + 1, 0, 0, accounts, amounts);
        amounts[1] = 0;
        ledger.distributeEpoch(0, e0, 0, 0, accounts, amounts);
        vm.expectRevert(abi.encodeWithSelector(Rewards.EpochAlreadyDistributed.selector, 0));
        ledger.distributeEpoch(0, e0, 0, 0, accounts, amounts);
        ledger.claimRewards(ALICE);
        assertEq(token.balanceOf(ALICE), 1000 ether + e0, "claimed");
        vm.expectRevert(abi.encodeWithSelector(Rewards.NoPendingRewards.selector, ALICE));
        ledger.claimRewards(ALICE);
        ledger.checkHoldings();
    }
}

/// Exposes the bit count used for the BatchSettled event.
contract PopcountProbe is DciLedger {
    constructor()
        DciLedger(
            AthToken(address(0)),
            address(0),
            LedgerBase.Params(0, 900, 1, 0, 0, 0, 10000, 0, 0, 0, 10000, 0, 0),
            LedgerBase.Pools(address(0), address(0), address(0), address(0), address(0)),
            0
        )
    {}

    function popcount(uint256 x) external pure returns (uint256) {
        return _popcount(x);
    }
}

contract PopcountTest is TestBase {
    PopcountProbe probe = new PopcountProbe();

    /// The SWAR count against bit-by-bit counting.
    function testFuzz_popcount_matches_counting_bits(uint256 x) public view {
        uint256 n;
        for (uint256 i = 0; i < 256; i++) {
            if ((x >> i) & 1 == 1) n++;
        }
        assertEq(probe.popcount(x), n, "popcount");
        assertEq(probe.popcount(type(uint256).max), 256, "all bits");
        assertEq(probe.popcount(0), 0, "no bits");
    }
}

contract LockTest is TestBase {
    AthToken token;
    DciLedger ledger;
    address constant ALICE = address(0xA11CE);
    address constant BOB = address(0xB0B);

    function setUp() public {
        address[] memory holders = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (holders[0], holders[1]) = (ALICE, BOB);
        (amounts[0], amounts[1]) = (21_000_000_000 ether, 21_000_000_000 ether);
        token = new AthToken(holders, amounts);
        LedgerBase.Params memory p = LedgerBase.Params(0, 900, 1, 0, 0, 0, 10000, 0, 0, 0, 10000, 0, 0);
        ledger = new DciLedger(
            token, address(this), p, LedgerBase.Pools(address(1), address(2), address(3), address(4), address(5)), 0
        );
        token.bindCustodian(address(ledger));
    }

    /// Runs of one consumer are moved at once; every lock still counts.
    function test_locks_of_several_consumers_in_one_call() public {
        Escrow.Lock[] memory locks = new Escrow.Lock[](4);
        locks[0] = Escrow.Lock(bytes16(uint128(1)), ALICE, 1 ether);
        locks[1] = Escrow.Lock(bytes16(uint128(2)), ALICE, 2 ether);
        locks[2] = Escrow.Lock(bytes16(uint128(3)), BOB, 4 ether);
        locks[3] = Escrow.Lock(bytes16(uint128(4)), ALICE, 8 ether);
        vm.expectRevert(abi.encodeWithSelector(Escrow.StaleSessionIndex.selector, 0, 1));
        ledger.lockEscrows(1, locks);
        ledger.lockEscrows(0, locks);
        assertEq(ledger.escrowed(ALICE), 11 ether, "alice escrow");
        assertEq(ledger.escrowed(BOB), 4 ether, "bob escrow");
        assertEq(ledger.nextSession(), 4, "indices");
        assertEq(token.balanceOf(address(ledger)), 15 ether, "held");
        ledger.checkHoldings();
    }
}
