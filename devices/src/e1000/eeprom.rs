//! The 64-word microwire EEPROM of the 82540EM, readable through EERD and
//! through EECD bit-banging (which is what Linux's e1000 driver uses on
//! this part).

use super::regs::eecd;

/// Words in the EEPROM.
pub const EEPROM_WORDS: usize = 64;
/// Word holding the checksum.
pub const CHECKSUM_WORD: usize = 0x3f;
/// Sum of words 0..=0x3f of a valid EEPROM.
pub const EEPROM_SUM: u16 = 0xbaba;
/// Microwire READ opcode (3 bits).
const READ_OPCODE: u32 = 0b110;
/// Opcode plus address bits of a command on a 64-word part.
const COMMAND_BITS: u32 = 3 + 6;

/// Contents per the SDM's EEPROM map (tables 5-2/5-3), as QEMU ships
/// them; words 0..=2 (MAC), 11 and 13 (device id) and 0x3f (checksum) are
/// filled in by [`Eeprom::new`].
const TEMPLATE: [u16; EEPROM_WORDS] = [
    0x0000, 0x0000, 0x0000, 0x0000, 0xffff, 0x0000, 0x0000, 0x0000, //
    0x3000, 0x1000, 0x6403, 0x0000, 0x8086, 0x0000, 0x8086, 0x3040, //
    0x0008, 0x2000, 0x7e14, 0x0048, 0x1000, 0x00d8, 0x0000, 0x2700, //
    0x6cc9, 0x3150, 0x0722, 0x040b, 0x0984, 0x0000, 0xc000, 0x0706, //
    0x1008, 0x0000, 0x0f04, 0x7fff, 0x4d01, 0xffff, 0xffff, 0xffff, //
    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, //
    0x0100, 0x4000, 0x121c, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, //
    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0x0000, //
];

/// State of the microwire serial interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Microwire {
    /// Bits shifted in on DI (command and address).
    val_in: u32,
    bits_in: u32,
    /// Position of the next bit on DO, counted over the whole array.
    bit_out: u32,
    reading: bool,
    /// The EECD bits the driver drives (SK, CS, DI, FWE, REQ).
    pins: u32,
}

#[derive(Debug, Clone)]
pub struct Eeprom {
    words: [u16; EEPROM_WORDS],
    wire: Microwire,
}

impl Eeprom {
    pub fn new(mac: [u8; 6], device_id: u16) -> Self {
        let mut words = TEMPLATE;
        for (i, pair) in mac.chunks_exact(2).enumerate() {
            words[i] = u16::from_le_bytes([pair[0], pair[1]]);
        }
        words[11] = device_id;
        words[13] = device_id;
        let sum = words[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |acc, &w| acc.wrapping_add(w));
        words[CHECKSUM_WORD] = EEPROM_SUM.wrapping_sub(sum);
        Self {
            words,
            wire: Microwire::default(),
        }
    }

    /// Word `addr`, if it exists.
    pub fn word(&self, addr: usize) -> Option<u16> {
        self.words.get(addr).copied()
    }

    /// Back to idle (device reset); the contents stay.
    pub fn reset_interface(&mut self) {
        self.wire = Microwire::default();
    }

    /// EECD as the driver reads it: EEPROM present, access always granted,
    /// DO driven while a READ is shifting data out (high otherwise).
    pub fn read_eecd(&self) -> u32 {
        let mut v = eecd::PRES | eecd::GNT | self.wire.pins;
        if !self.wire.reading || self.data_bit() {
            v |= eecd::DO;
        }
        v
    }

    fn data_bit(&self) -> bool {
        let pos = self.wire.bit_out;
        let word = self.words[((pos >> 4) as usize) % EEPROM_WORDS];
        (word >> (15 - (pos & 0xf))) & 1 != 0
    }

    /// A driver write of EECD: clock edges on SK shift the command in on
    /// DI and the data out on DO.
    pub fn write_eecd(&mut self, val: u32) {
        let old = self.wire.pins;
        self.wire.pins = val & (eecd::SK | eecd::CS | eecd::DI | eecd::FWE_MASK | eecd::REQ);
        if (val ^ old) & eecd::SK == 0 {
            return; // no clock edge
        }
        if val & eecd::SK == 0 {
            // Falling edge: the next data bit appears on DO.
            self.wire.bit_out = self.wire.bit_out.wrapping_add(1);
            return;
        }
        if val & eecd::CS == 0 {
            // Rising edge without chip select: the part goes idle.
            let pins = self.wire.pins;
            self.wire = Microwire {
                pins,
                ..Microwire::default()
            };
            return;
        }
        self.wire.val_in = (self.wire.val_in << 1) | u32::from(val & eecd::DI != 0);
        self.wire.bits_in = self.wire.bits_in.saturating_add(1);
        if self.wire.bits_in == COMMAND_BITS && !self.wire.reading {
            let addr = self.wire.val_in & 0x3f;
            // The falling edge that ends the address presents bit 15.
            self.wire.bit_out = (addr << 4).wrapping_sub(1);
            self.wire.reading = (self.wire.val_in >> 6) & 0b111 == READ_OPCODE;
        }
    }
}

/// An EEPROM's snapshot: its words and where a bit-banged read stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct EepromState {
    words: Vec<u16>,
    wire: Microwire,
}

impl Eeprom {
    pub(super) fn save(&self) -> EepromState {
        EepromState {
            words: self.words.to_vec(),
            wire: self.wire,
        }
    }

    pub(super) fn restore(&mut self, s: &EepromState) -> Result<(), String> {
        if s.words.len() != EEPROM_WORDS {
            return Err(format!(
                "{} EEPROM words saved, {EEPROM_WORDS} expected",
                s.words.len()
            ));
        }
        self.words.copy_from_slice(&s.words);
        self.wire = s.wire;
        Ok(())
    }
}
