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
    /// The private keys of the latest committee on chain (the genesis
    /// committee's are 100, 101, 102).
    uint256[] signing;

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
        ledger = new DciLedger(token, address(this), p, pools, HALF, addrs(100, 3));
        signing = keys(100, 3);
        token.bindCustodian(address(ledger));
        ledger.move(LIQUIDITY, ALICE, 1000 ether);
        ledger.move(LIQUIDITY, BOB, 1000 ether);
    }

    function keys(uint256 first, uint256 n) internal pure returns (uint256[] memory k) {
        k = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            k[i] = first + i;
        }
    }

    function addrs(uint256 first, uint256 n) internal pure returns (address[] memory a) {
        a = new address[](n);
        for (uint256 i = 0; i < n; i++) {
            a[i] = vm.addr(first + i);
        }
    }

    /// Signatures of `ks` over `digest`, as committee members make them.
    function sigs(uint256[] memory ks, bytes32 digest) internal pure returns (bytes[] memory out) {
        out = new bytes[](ks.length);
        for (uint256 i = 0; i < ks.length; i++) {
            out[i] = sig(ks[i], digest);
        }
    }

    /// Publishes the committee of `epoch` (keys first .. first + n - 1),
    /// signed by every member of the latest committee.
    function publish(uint64 epoch, uint256 first, uint256 n) internal {
        address[] memory members = addrs(first, n);
        ledger.setCommittee(epoch, members, sigs(signing, ledger.committeeDigest(epoch, members)));
        signing = keys(first, n);
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

    /// Indexers bond in role 2 (the registry's Sybil cost); it unbonds like
    /// any stake, is never slashable, and there is no role 3.
    function test_indexer_stake_is_a_role_of_its_own_and_not_slashable() public {
        ledger.stake(ALICE, 2, 100 ether);
        assertEq(ledger.staked(ALICE, 2), 100 ether, "indexer stake");
        assertEq(ledger.staked(ALICE, 1), 0, "not checker stake");
        ledger.unstake(ALICE, 2, 40 ether, nowMs());
        assertEq(ledger.unbondingCount(ALICE, 2), 1, "unbonding in role 2");
        vm.expectRevert(abi.encodeWithSelector(LedgerBase.InvalidRole.selector, 3));
        ledger.stake(ALICE, 3, 1 ether);
        bytes32 evidence = keccak256("an indexer");
        bytes[] memory s = sigs(signing, ledger.slashDigest(ALICE, 2, 0, evidence, 1 ether));
        vm.expectRevert(abi.encodeWithSelector(Staking.RoleNotSlashable.selector, 2));
        ledger.slash(ALICE, 2, 0, evidence, 1 ether, s);
        address[] memory who = new address[](1);
        who[0] = ALICE;
        DciLedger.AccountRow[] memory rows = ledger.accountRows(who);
        assertEq(rows[0].stakedIndexer, 60 ether, "accountRows");
        assertEq(rows[0].unbonding, 40 ether, "accountRows unbonding");
        ledger.checkHoldings();
    }

    function sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, MessageHashUtils.toEthSignedMessageHash(digest));
        return abi.encodePacked(r, s, v);
    }

    function test_slashing_needs_two_thirds_of_the_committee() public {
        ledger.stake(BOB, 1, 500 ether);
        publish(4, 100, 3);
        bytes32 evidence = keccak256("verdicts");
        bytes32 digest = ledger.slashDigest(BOB, 1, 4, evidence, 30 ether);
        // One member, one member twice, an outsider: not a quorum.
        bytes[] memory s3 = new bytes[](3);
        s3[0] = sig(100, digest);
        s3[1] = sig(100, digest);
        s3[2] = sig(999, digest);
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 1, 2, 3));
        ledger.slash(BOB, 1, 4, evidence, 30 ether, s3);
        // A signature over another amount does not count either.
        s3[1] = sig(101, ledger.slashDigest(BOB, 1, 4, evidence, 31 ether));
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 1, 2, 3));
        ledger.slash(BOB, 1, 4, evidence, 30 ether, s3);
        s3[1] = sig(101, digest);
        ledger.slash(BOB, 1, 4, evidence, 30 ether, s3);
        assertEq(ledger.staked(BOB, 1), 470 ether, "stake slashed");
        assertEq(token.balanceOf(SLASHED), 30 ether, "to the slashed pool");
        vm.expectRevert();
        ledger.slash(BOB, 1, 4, evidence, 30 ether, s3);
        vm.expectRevert(abi.encodeWithSelector(Staking.NoCommittee.selector, 5));
        ledger.slash(BOB, 1, 5, evidence, 30 ether, s3);
    }

    function test_slashing_takes_rewards_first_then_at_most_the_fraction() public {
        ledger.stake(BOB, 0, 100 ether);
        ledger.unstake(BOB, 0, 100 ether, nowMs());
        address[] memory accounts = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        (accounts[0], amounts[0]) = (BOB, 5 ether);
        vm.warp(T0 + 900);
        ledger.distributeEpoch(0, 5 ether, 0, 0, accounts, amounts);
        publish(1, 100, 1);
        bytes[] memory one = new bytes[](1);
        one[0] = sig(100, ledger.slashDigest(BOB, 0, 1, bytes32(0), 50 ether));
        ledger.slash(BOB, 0, 1, bytes32(0), 50 ether, one);
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
        returns (bytes[] memory)
    {
        return sigs(keys(100, 2), ledger.slashDigest(offender, role, epoch, evidence, amount));
    }

    function test_a_piece_of_evidence_is_slashed_once_even_in_a_later_epoch() public {
        ledger.stake(BOB, 0, 500 ether);
        ledger.stake(BOB, 1, 500 ether);
        publish(4, 100, 3);
        publish(5, 100, 3);
        bytes32 evidence = keccak256("verdicts");
        ledger.slash(BOB, 1, 4, evidence, 30 ether, quorum(BOB, 1, 4, evidence, 30 ether));
        assertTrue(ledger.slashApplied(evidence), "keyed by the evidence");
        // The same report re-signed by the committee of a later epoch, or
        // the same evidence against another role or for another amount.
        bytes memory refused = abi.encodeWithSelector(Staking.SlashAlreadyApplied.selector, evidence);
        bytes[] memory q = quorum(BOB, 1, 5, evidence, 30 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 1, 5, evidence, 30 ether, q);
        q = quorum(BOB, 0, 5, evidence, 30 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 0, 5, evidence, 30 ether, q);
        q = quorum(BOB, 1, 4, evidence, 1 ether);
        vm.expectRevert(refused);
        ledger.slash(BOB, 1, 4, evidence, 1 ether, q);
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
        publish(1, 100, 3);
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
        vm.warp(T0 + 900);
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

    // ----- issue 14: contracts that trust no single key -----

    /// The settler (this contract) makes up a committee of its own keys: it
    /// cannot publish it, alone or in its batch, and cannot slash with it.
    function test_the_settler_cannot_set_a_committee_of_its_own_keys_nor_slash_alone() public {
        ledger.stake(BOB, 0, 500 ether);
        address[] memory mine = addrs(900, 3);
        bytes[] memory own = sigs(keys(900, 3), ledger.committeeDigest(1, mine));
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 0, 2, 3));
        ledger.setCommittee(1, mine, own);
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 0, 2, 3));
        ledger.setCommittee(1, mine, new bytes[](0));
        // Nor inside its own batch, before a slash.
        bytes32 evidence = keccak256("made up");
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeCall(Staking.setCommittee, (1, mine, own));
        calls[1] = abi.encodeCall(
            Staking.slash,
            (BOB, 0, 1, evidence, 50 ether, sigs(keys(900, 3), ledger.slashDigest(BOB, 0, 1, evidence, 50 ether)))
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                DciLedger.BatchCallFailed.selector, 0, abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 0, 2, 3)
            )
        );
        ledger.batch(bytes32(uint256(9)), calls);
        // Its keys do not slash in an epoch without a committee, nor in the
        // genesis committee's epoch.
        bytes[] memory s1 = sigs(keys(900, 3), ledger.slashDigest(BOB, 0, 1, evidence, 50 ether));
        vm.expectRevert(abi.encodeWithSelector(Staking.NoCommittee.selector, 1));
        ledger.slash(BOB, 0, 1, evidence, 50 ether, s1);
        bytes[] memory s0 = sigs(keys(900, 3), ledger.slashDigest(BOB, 0, 0, evidence, 50 ether));
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 0, 2, 3));
        ledger.slash(BOB, 0, 0, evidence, 50 ether, s0);
        assertEq(ledger.staked(BOB, 0), 500 ether, "nothing slashed");
        assertEq(ledger.latestCommitteeEpoch(), 0, "still the genesis committee");
    }

    /// ceil(2n/3) DISTINCT members of the latest committee, over this
    /// ledger's digest of this epoch and these members.
    function test_a_committee_needs_two_thirds_of_the_previous_one() public {
        address[] memory next = addrs(200, 3);
        bytes32 digest = ledger.committeeDigest(1, next);
        bytes[] memory s = new bytes[](1);
        s[0] = sig(100, digest);
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 1, 2, 3));
        ledger.setCommittee(1, next, s);
        // One member's signature three times, or with its malleated twin
        // (s' = N - s, the other v): one signer.
        s = new bytes[](3);
        (s[0], s[1], s[2]) = (sig(100, digest), sig(100, digest), sig(100, digest));
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 1, 2, 3));
        ledger.setCommittee(1, next, s);
        (uint8 v, bytes32 r, bytes32 ss) = vm.sign(100, MessageHashUtils.toEthSignedMessageHash(digest));
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        s[1] = abi.encodePacked(r, bytes32(n - uint256(ss)), v == 27 ? uint8(28) : uint8(27));
        // The new members vouching for themselves do not count.
        s[2] = sig(200, digest);
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 1, 2, 3));
        ledger.setCommittee(1, next, s);
        // Signatures over other members, another epoch or another ledger do
        // not count.
        address[] memory other = addrs(300, 3);
        DciLedger elsewhere = new DciLedger(
            token,
            address(this),
            ledger.params(),
            LedgerBase.Pools(MINING, CHECKER_FEES, INDEXER_FEES, TREASURY, SLASHED),
            HALF,
            addrs(100, 3)
        );
        s[0] = sig(100, digest);
        s[1] = sig(101, ledger.committeeDigest(1, other));
        s[2] = sig(102, ledger.committeeDigest(2, next));
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 1, 2, 3));
        ledger.setCommittee(1, next, s);
        s[1] = sig(101, elsewhere.committeeDigest(1, next));
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 1, 2, 3));
        ledger.setCommittee(1, next, s);
        // Two distinct members: a quorum, and anyone may submit it.
        s[1] = sig(101, digest);
        vm.prank(ALICE);
        ledger.setCommittee(1, next, s);
        assertEq(ledger.latestCommitteeEpoch(), 1, "published");
        assertTrue(ledger.isCommitteeMember(1, vm.addr(200)), "a member");
        assertTrue(!ledger.isCommitteeMember(1, vm.addr(100)), "the old committee is not");
    }

    /// A committee is never replaced, nor published for an epoch at or
    /// before the latest one, even with a quorum of the latest committee.
    function test_a_committee_for_an_old_epoch_is_refused() public {
        publish(2, 200, 3);
        for (uint64 e = 0; e <= 2; e++) {
            address[] memory members = addrs(300, 3);
            bytes[] memory s = sigs(signing, ledger.committeeDigest(e, members));
            vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeEpochNotNewer.selector, e, 2));
            ledger.setCommittee(e, members, s);
        }
        address[] memory genesis = ledger.committee(0);
        assertEq(genesis.length, 3, "genesis kept");
        assertTrue(genesis[0] == vm.addr(100), "genesis members kept");
        assertTrue(ledger.committee(2)[0] == vm.addr(200), "epoch 2 kept");
        assertEq(ledger.committee(1).length, 0, "a skipped epoch has no committee");
        // The committee's members must be valid: none twice, none zero.
        address[] memory twice = addrs(300, 3);
        twice[2] = twice[0];
        bytes[] memory t = sigs(signing, ledger.committeeDigest(3, twice));
        vm.expectRevert(abi.encodeWithSelector(Staking.DuplicateMember.selector, twice[0]));
        ledger.setCommittee(3, twice, t);
        address[] memory none = new address[](0);
        t = sigs(signing, ledger.committeeDigest(3, none));
        vm.expectRevert(abi.encodeWithSelector(Staking.EmptyCommittee.selector, 3));
        ledger.setCommittee(3, none, t);
    }

    /// Epoch e's rewards only once genesisTime + (e + 1) * epochSecs has
    /// passed on the chain's clock.
    function test_distribute_epoch_refuses_an_epoch_that_has_not_ended() public {
        assertEq(ledger.genesisTime(), T0, "genesis: the deployment block");
        assertEq(ledger.epochEnd(0), T0 + 900, "epoch 0 ends");
        address[] memory accounts = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        (accounts[0], amounts[0]) = (ALICE, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(Rewards.EpochNotEnded.selector, 0, T0 + 900, T0));
        ledger.distributeEpoch(0, 1 ether, 0, 0, accounts, amounts);
        vm.warp(T0 + 899);
        vm.expectRevert(abi.encodeWithSelector(Rewards.EpochNotEnded.selector, 0, T0 + 900, T0 + 899));
        ledger.distributeEpoch(0, 1 ether, 0, 0, accounts, amounts);
        vm.warp(T0 + 900);
        ledger.distributeEpoch(0, 1 ether, 0, 0, accounts, amounts);
        // The future's emission: refused.
        vm.expectRevert(abi.encodeWithSelector(Rewards.EpochNotEnded.selector, 1, T0 + 1800, T0 + 900));
        ledger.distributeEpoch(1, 1 ether, 0, 0, accounts, amounts);
        vm.expectRevert(abi.encodeWithSelector(Rewards.EpochNotEnded.selector, 35_039, T0 + 900 * 35_040, T0 + 900));
        ledger.distributeEpoch(35_039, 1 ether, 0, 0, accounts, amounts);
        assertEq(ledger.totalPending(), 1 ether, "only epoch 0 paid");
        ledger.checkHoldings();
    }

    /// At most MAX_UNBONDING entries per account and role; entries withdrawn
    /// or slashed away free their places.
    function test_unstaking_beyond_the_bound_is_refused() public {
        ledger.stake(ALICE, 0, 16 ether);
        ledger.stake(ALICE, 1, 20 ether);
        for (uint256 i = 0; i < 16; i++) {
            ledger.unstake(ALICE, 0, 1 ether, nowMs());
        }
        assertEq(ledger.unbondingCount(ALICE, 0), 16, "full");
        ledger.stake(ALICE, 0, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(Staking.TooManyUnbonding.selector, ALICE, 0, 16));
        ledger.unstake(ALICE, 0, 1 ether, nowMs());
        // The other role has its own bound.
        ledger.unstake(ALICE, 1, 1 ether, nowMs());
        assertEq(ledger.unbondingCount(ALICE, 1), 1, "checker entries");
        // A slash taking an entry whole frees its place: 10% of the 17
        // bonded is 1.7, the 1 staked first, then one whole entry (0.7 of it).
        bytes32 evidence = keccak256("cheat");
        ledger.slash(ALICE, 0, 0, evidence, 1.7 ether, quorum(ALICE, 0, 0, evidence, 1.7 ether));
        assertEq(ledger.unbondingCount(ALICE, 0), 16, "no entry taken whole");
        evidence = keccak256("cheat again");
        ledger.slash(ALICE, 0, 0, evidence, 1 ether, quorum(ALICE, 0, 0, evidence, 1 ether));
        assertEq(ledger.unbondingCount(ALICE, 0), 15, "one entry taken whole");
        ledger.stake(ALICE, 0, 1 ether);
        ledger.unstake(ALICE, 0, 1 ether, nowMs());
        // Withdrawn entries free theirs.
        vm.warp(T0 + 7 days);
        ledger.withdrawUnbonded(ALICE, nowMs());
        assertEq(ledger.unbondingCount(ALICE, 0) + ledger.unbondingCount(ALICE, 1), 0, "all withdrawn");
        ledger.stake(ALICE, 0, 1 ether);
        ledger.unstake(ALICE, 0, 1 ether, nowMs());
        ledger.checkHoldings();
    }

    /// Genesis -> epoch 1 -> epoch 2, each committee signed by two thirds of
    /// the one before; slashes of epochs 1 and 2 are counted against their
    /// own committees, and only the latest committee can sign the next.
    function test_a_slash_works_through_a_signed_committee_chain() public {
        ledger.stake(BOB, 1, 500 ether);
        // Epoch 1 (4 members), signed by 2 of the 3 genesis members.
        address[] memory one = addrs(200, 4);
        ledger.setCommittee(1, one, sigs(keys(101, 2), ledger.committeeDigest(1, one)));
        // Epoch 2 (5 members), signed by 3 of the 4 of epoch 1.
        address[] memory two = addrs(300, 5);
        bytes32 d2 = ledger.committeeDigest(2, two);
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 2, 3, 4));
        ledger.setCommittee(2, two, sigs(keys(200, 2), d2));
        ledger.setCommittee(2, two, sigs(keys(201, 3), d2));
        // The genesis committee can no longer vouch for anything.
        address[] memory three = addrs(400, 3);
        bytes[] memory old = sigs(keys(100, 3), ledger.committeeDigest(3, three));
        vm.expectRevert(abi.encodeWithSelector(Staking.CommitteeQuorum.selector, 0, 4, 5));
        ledger.setCommittee(3, three, old);
        // A slash of epoch 2: 4 of its 5 members; 3 are not enough, nor are
        // the members of epoch 1.
        bytes32 evidence = keccak256("epoch 2 verdicts");
        bytes32 d = ledger.slashDigest(BOB, 1, 2, evidence, 10 ether);
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 3, 4, 5));
        ledger.slash(BOB, 1, 2, evidence, 10 ether, sigs(keys(300, 3), d));
        vm.expectRevert(abi.encodeWithSelector(Staking.SlashQuorum.selector, 0, 4, 5));
        ledger.slash(BOB, 1, 2, evidence, 10 ether, sigs(keys(200, 4), d));
        ledger.slash(BOB, 1, 2, evidence, 10 ether, sigs(keys(301, 4), d));
        // A slash of epoch 1, by its own committee.
        bytes32 late = keccak256("epoch 1 verdicts");
        ledger.slash(BOB, 1, 1, late, 5 ether, sigs(keys(200, 3), ledger.slashDigest(BOB, 1, 1, late, 5 ether)));
        assertEq(ledger.staked(BOB, 1), 485 ether, "slashed twice");
        assertEq(token.balanceOf(SLASHED), 15 ether, "slashed pool");
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
            0,
            one()
        )
    {}

    function one() internal pure returns (address[] memory a) {
        a = new address[](1);
        a[0] = address(1);
    }

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
        address[] memory genesisCommittee = new address[](1);
        genesisCommittee[0] = address(6);
        ledger = new DciLedger(
            token,
            address(this),
            p,
            LedgerBase.Pools(address(1), address(2), address(3), address(4), address(5)),
            0,
            genesisCommittee
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

/// Gas of the bounded loops (`forge test --match-contract GasTest -vv`
/// prints them; they are measured from a calling contract, without the
/// transaction's 21,000 base and calldata costs).
contract GasTest is TestBase {
    AthToken token;
    address constant LIQUIDITY = address(0x1002);
    address constant BOB = address(0xB0B);

    function deployWith(uint256 committeeSize, uint32 slashBps) internal returns (DciLedger ledger) {
        vm.warp(1_700_000_000);
        address[] memory holders = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        (holders[0], amounts[0]) = (LIQUIDITY, 42_000_000_000 ether);
        token = new AthToken(holders, amounts);
        LedgerBase.Params memory p =
            LedgerBase.Params(7 days, 900, 10, 8000, slashBps, slashBps, 9000, 500, 200, 300, 7000, 2000, 1000);
        ledger = new DciLedger(
            token,
            address(this),
            p,
            LedgerBase.Pools(address(1), address(2), address(3), address(4), address(5)),
            0,
            members(1000, committeeSize)
        );
        token.bindCustodian(address(ledger));
    }

    function members(uint256 first, uint256 n) internal pure returns (address[] memory a) {
        a = new address[](n);
        for (uint256 i = 0; i < n; i++) {
            a[i] = vm.addr(first + i);
        }
    }

    function signed(uint256 first, uint256 n, bytes32 digest) internal pure returns (bytes[] memory out) {
        out = new bytes[](n);
        for (uint256 i = 0; i < n; i++) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(first + i, MessageHashUtils.toEthSignedMessageHash(digest));
            out[i] = abi.encodePacked(r, s, v);
        }
    }

    /// A committee of n members signed by k of a previous committee of n.
    function measureSetCommittee(uint256 n, uint256 k) internal returns (uint256 used) {
        DciLedger ledger = deployWith(n, 1000);
        address[] memory next = members(5000, n);
        bytes[] memory s = signed(1000, k, ledger.committeeDigest(1, next));
        uint256 g = gasleft();
        ledger.setCommittee(1, next, s);
        used = g - gasleft();
    }

    function test_gas_set_committee() public {
        emit log_named_uint("setCommittee n=3, 3 signatures", measureSetCommittee(3, 3));
        emit log_named_uint("setCommittee n=3, 2 signatures", measureSetCommittee(3, 2));
        emit log_named_uint("setCommittee n=10, 10 signatures", measureSetCommittee(10, 10));
        emit log_named_uint("setCommittee n=10, 7 signatures", measureSetCommittee(10, 7));
        emit log_named_uint("setCommittee n=100, 100 signatures", measureSetCommittee(100, 100));
        emit log_named_uint("setCommittee n=100, 67 signatures", measureSetCommittee(100, 67));
    }

    /// The worst slash: all three roles' lists full (48 entries, released at
    /// different times), a 100% fraction, every entry of the role taken.
    function test_gas_slash_with_full_unbonding_lists() public {
        DciLedger ledger = deployWith(3, 10_000);
        ledger.move(LIQUIDITY, BOB, 49 ether);
        ledger.stake(BOB, 0, 17 ether);
        ledger.stake(BOB, 1, 16 ether);
        ledger.stake(BOB, 2, 16 ether);
        uint256 unstakeGas;
        for (uint256 i = 0; i < 16; i++) {
            vm.warp(1_700_000_000 + i);
            uint64 t = uint64(block.timestamp * 1000);
            ledger.unstake(BOB, 1, 1 ether, t);
            ledger.unstake(BOB, 2, 1 ether, t);
            uint256 g = gasleft();
            ledger.unstake(BOB, 0, 1 ether + i, t);
            unstakeGas = g - gasleft();
        }
        emit log_named_uint("unstake, the 16th entry of a role (48 in the list)", unstakeGas);
        bytes32 evidence = keccak256("worst case");
        uint256 amount = 32 ether;
        bytes[] memory s = signed(1000, 2, ledger.slashDigest(BOB, 0, 0, evidence, amount));
        uint256 g0 = gasleft();
        ledger.slash(BOB, 0, 0, evidence, amount, s);
        uint256 used = g0 - gasleft();
        emit log_named_uint("slash taking all 16 entries of a role (48 in the list)", used);
        assertEq(ledger.unbondingCount(BOB, 0), 0, "all taken");
        assertEq(ledger.unbondingCount(BOB, 1), 16, "the other roles kept");
        assertEq(ledger.unbondingCount(BOB, 2), 16, "the other roles kept");
        ledger.checkHoldings();
    }
}
