// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IMessageRecipient} from "./IMessageRecipient.sol";

/// @notice A recipient for tests and the devnet: records what it receives.
/// @dev Two bodies trigger failure modes on purpose:
///      - "revert": reverts with a reason string;
///      - "gas": burns BURN_GAS gas in a loop before recording (runs out of gas below that cap).
contract TestRecipient is IMessageRecipient {
    uint256 public constant BURN_GAS = 500_000;

    uint256 public received;
    uint32 public lastOrigin;
    bytes32 public lastSender;
    bytes public lastBody;

    event Received(uint32 origin, bytes32 sender, bytes body);

    function handle(uint32 origin, bytes32 sender, bytes calldata body) external override {
        bytes32 bodyHash = keccak256(body);
        if (bodyHash == keccak256("revert")) {
            revert("TestRecipient: revert requested");
        }
        if (bodyHash == keccak256("gas")) {
            _burn(BURN_GAS);
        }
        received += 1;
        lastOrigin = origin;
        lastSender = sender;
        lastBody = body;
        emit Received(origin, sender, body);
    }

    /// @dev Spins until `amount` gas is spent; with less than that left it runs out of gas.
    function _burn(uint256 amount) private view {
        uint256 start = gasleft();
        uint256 stop = start > amount ? start - amount : 0;
        uint256 acc;
        while (gasleft() > stop) {
            acc = uint256(keccak256(abi.encode(acc)));
        }
    }
}
