//! A minimal MC146818 CMOS RTC at ports 0x70/0x71: the clock registers read
//! the host's UTC time in BCD, the rest is 128 bytes of plain RAM. The guest
//! reads the wall clock here at boot; without it every probe is an exit that
//! returns garbage and the kernel retries (~40,000 exits on this host).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::BusDevice;

pub const CMOS_BASE: u64 = 0x70;
pub const CMOS_LEN: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Status B: 24-hour mode, BCD (bit 2 clear), no interrupts.
const STATUS_B_24H: u8 = 0x02;
/// Status D: "valid RAM and time" (battery good).
const STATUS_D_VRT: u8 = 0x80;
/// Status A: 32.768 kHz divider, 1024 Hz rate, update-in-progress clear.
const STATUS_A_DEFAULT: u8 = 0x26;

pub struct Cmos {
    pub(super) index: u8,
    pub(super) ram: [u8; 128],
    now: fn() -> u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bcd(v: u64) -> u8 {
    let v = (v % 100) as u8;
    ((v / 10) << 4) | (v % 10)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's
/// civil_from_days, valid for the whole u64 range we can meet.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Cmos {
    pub fn new() -> Self {
        Self::with_clock(unix_now)
    }

    fn with_clock(now: fn() -> u64) -> Self {
        let mut ram = [0u8; 128];
        ram[REG_STATUS_A as usize] = STATUS_A_DEFAULT;
        ram[REG_STATUS_B as usize] = STATUS_B_24H;
        ram[REG_STATUS_D as usize] = STATUS_D_VRT;
        Self { index: 0, ram, now }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let t = (self.now)();
        let days = (t / 86_400) as i64;
        let secs = t % 86_400;
        let (year, month, day) = civil_from_days(days);
        match reg {
            REG_SECONDS => bcd(secs % 60),
            REG_MINUTES => bcd(secs / 60 % 60),
            REG_HOURS => bcd(secs / 3600),
            // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
            REG_WEEKDAY => bcd(((days + 4).rem_euclid(7) + 1) as u64),
            REG_DAY => bcd(day),
            REG_MONTH => bcd(month),
            REG_YEAR => bcd(year.rem_euclid(100) as u64),
            REG_CENTURY => bcd((year / 100) as u64),
            REG_STATUS_C => 0,
            r => self.ram[(r & 0x7f) as usize],
        }
    }
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if data.len() != 1 {
            return;
        }
        data[0] = match offset {
            0 => self.index,
            1 => self.read_register(self.index),
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [value] = data else { return };
        match offset {
            // Bit 7 of the index port is the NMI mask, not part of the index.
            0 => self.index = value & 0x7f,
            1 => match self.index {
                REG_STATUS_C | REG_STATUS_D => {}
                // Keep BCD/24h: the guest only reads the clock here.
                REG_STATUS_B => self.ram[REG_STATUS_B as usize] = (value & !0x06) | STATUS_B_24H,
                i => self.ram[i as usize] = *value,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg | 0x80]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    #[test]
    fn clock_registers_in_bcd() {
        // 2026-11-23 18:37:43 UTC, a Monday
        let mut c = Cmos::with_clock(|| 1_795_459_063);
        assert_eq!(read(&mut c, REG_SECONDS), 0x43);
        assert_eq!(read(&mut c, REG_MINUTES), 0x37);
        assert_eq!(read(&mut c, REG_HOURS), 0x18);
        assert_eq!(read(&mut c, REG_DAY), 0x23);
        assert_eq!(read(&mut c, REG_MONTH), 0x11);
        assert_eq!(read(&mut c, REG_YEAR), 0x26);
        assert_eq!(read(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read(&mut c, REG_WEEKDAY), 2);
        assert_eq!(
            read(&mut c, REG_STATUS_A) & 0x80,
            0,
            "no update in progress"
        );
        assert_eq!(read(&mut c, REG_STATUS_D), STATUS_D_VRT);
    }

    #[test]
    fn leap_day_and_ram() {
        let mut c = Cmos::with_clock(|| 951_782_400); // 2000-02-29 00:00:00
        assert_eq!(read(&mut c, REG_DAY), 0x29);
        assert_eq!(read(&mut c, REG_MONTH), 0x02);
        c.write(0, &[0x40]);
        c.write(1, &[0x5a]);
        assert_eq!(read(&mut c, 0x40), 0x5a);
        c.write(0, &[REG_STATUS_B]);
        c.write(1, &[0x04]); // binary mode request is refused
        assert_eq!(read(&mut c, REG_STATUS_B), STATUS_B_24H);
    }
}
