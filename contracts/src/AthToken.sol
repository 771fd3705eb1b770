// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ATH, the DCI token (SPEC R-LG1).
///
/// Trust assumptions:
/// - The supply is fixed: 42,000,000,000 ATH (18 decimals) minted once, in the
///   constructor, to the genesis allocation; nothing can mint or burn later.
/// - DCI accounts are custodial: a DCI account id maps to an address nobody
///   holds a key for (keccak256 of the id), and only the custodian — the
///   DciLedger contract, bound once by the deployer right after deployment —
///   moves their tokens, on its settler's instructions. The custodian can
///   move the tokens of any holder, so holders trust the DciLedger contract
///   (whose rules are public) and, through it, the settler (see DciLedger).
/// - Apart from that, ATH is a plain OpenZeppelin ERC-20.
contract AthToken is ERC20 {
    /// The whole supply, in base units.
    uint256 public constant TOTAL_SUPPLY = 42_000_000_000 ether;

    /// Who may bind the custodian (once).
    address public immutable deployer;
    /// The DciLedger contract; zero until bound.
    address public custodian;

    error AllocationMismatch(uint256 holders, uint256 amounts);
    error SupplyMismatch(uint256 expected, uint256 found);
    error NotDeployer(address caller);
    error CustodianAlreadyBound(address custodian);
    error NotCustodian(address caller);

    constructor(address[] memory holders, uint256[] memory amounts) ERC20("Aethir", "ATH") {
        if (holders.length != amounts.length) revert AllocationMismatch(holders.length, amounts.length);
        deployer = msg.sender;
        uint256 sum;
        for (uint256 i = 0; i < holders.length; i++) {
            _mint(holders[i], amounts[i]);
            sum += amounts[i];
        }
        if (sum != TOTAL_SUPPLY) revert SupplyMismatch(TOTAL_SUPPLY, sum);
    }

    /// Binds the DciLedger contract as custodian; once, by the deployer.
    function bindCustodian(address ledger) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (custodian != address(0)) revert CustodianAlreadyBound(custodian);
        custodian = ledger;
    }

    /// Moves `amount` from `from` to `to`: the custodian's only power.
    function custodialTransfer(address from, address to, uint256 amount) external {
        if (msg.sender != custodian) revert NotCustodian(msg.sender);
        _transfer(from, to, amount);
    }
}
